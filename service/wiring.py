"""The process-wide services, as typed objects: built once by `service.bootstrap.build_services`.

Stateless and shareable by any number of workers; everything a request needs beyond them is in its frozen
`RequestContext`, its `RequestRecord` and the `Repository` built for its unit of work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.config import Settings
from service.db import Database

if TYPE_CHECKING:
    from service.audit.log import AuditLog
    from service.audit.seal import Sealer
    from service.auth import AuthLayer
    from service.auth.authenticate import Authenticator
    from service.operations import Operations
    from service.policy.guard import PolicyGuard
    from service.policy.recorder import AfterAccess
    from service.repository.rules import WriteRules
    from service.search.engine import SearchEngine
    from service.storage.store import Store


@dataclass
class Services:
    settings: Settings
    db: Database
    store: Store
    search: SearchEngine
    policy: PolicyGuard
    auth: AuthLayer
    authenticator: Authenticator
    audit: AuditLog
    sealer: Sealer
    after_access: AfterAccess  # the policy's part of the audit step (break-glass grants and flags)
    rules: WriteRules
    operations: Operations
    # `sharedcare demo load` steps after the records: (services) -> {what: count}
    loaders: list[Callable[[Services], dict[str, Any]]] = field(default_factory=list)
    # HTTP routes beyond the FHIR API (the authorisation server): (app) -> None
    app_installers: list[Callable[[Any], None]] = field(default_factory=list)
    export_worker: Any = None  # bulk export's worker for this process (service.export.worker.ExportWorker)
    # R4 rest-hook Subscriptions (service.subscriptions.Subscriptions): settings, write listener, delivery worker
    subscriptions: Any = None

    @property
    def base(self) -> str:
        return self.settings.fhir_base
