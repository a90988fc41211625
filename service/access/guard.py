"""The access guard protocol and the default used before the identity layer is configured.

Interactions: read, vread, history-instance, history-type, history-system, create, update, patch,
delete, search-type, search-system, operation. The guard raises OperationOutcomeError (401/403/404)
to deny; `check_resource` may also be used to hide a resource (a denied read looks like not found).
"""

from __future__ import annotations

from typing import Any, Protocol

from service.access.context import RequestContext


class Guard(Protocol):
    def check_type(self, ctx: RequestContext, interaction: str, rtype: str | None) -> None: ...

    def check_resource(self, ctx: RequestContext, interaction: str, rtype: str, resource: dict[str, Any]) -> None: ...

    def can_see(self, ctx: RequestContext, rtype: str, resource: dict[str, Any]) -> bool: ...


class AllowAll:
    """Permits everything. Used only by internal tools (`RequestContext.system()`) and unit tests."""

    def check_type(self, ctx: RequestContext, interaction: str, rtype: str | None) -> None:
        return None

    def check_resource(self, ctx: RequestContext, interaction: str, rtype: str, resource: dict[str, Any]) -> None:
        return None

    def can_see(self, ctx: RequestContext, rtype: str, resource: dict[str, Any]) -> bool:
        return True
