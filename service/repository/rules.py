"""Write rules: what a type's writes must respect beyond the base spec, run by the repository on every write
of that type, whichever path it comes by (REST, Bundle entries, `$operations`).

A rule has `before(repo, rtype, before, after, change)`: it may refuse (raise OperationOutcomeError) or
complete server-owned elements of `after` (`before` is None on create); and `after(repo, stored, before,
change)`: it runs after the version is stored, in the same transaction (e.g. the Provenance of a workflow
write). `Change` says what the caller is doing, for the rules and the Provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from service.fhir.stored import Stored


@dataclass
class Change:
    activity: str | None = None  # a workflow activity code (service.workflows.codes.WORKFLOW_ACTIVITY)
    reason: str | None = None
    sources: list[str] = field(default_factory=list)  # Provenance entities the version was derived from
    prefilled: dict[str, str] = field(default_factory=dict)  # unit linkId -> source reference (pre-fill)
    agreed_with: dict[str, Any] | None = None  # CarePlan: who the plan was agreed with


class WriteRule(Protocol):
    def before(self, repo: Any, rtype: str, before: dict[str, Any] | None, after: dict[str, Any],
               change: Change) -> None: ...

    def after(self, repo: Any, stored: Stored, before: dict[str, Any] | None, change: Change) -> None: ...


@dataclass
class WriteRules:
    """The rules per resource type, in the order they run."""

    by_type: dict[str, list[WriteRule]] = field(default_factory=dict)

    def add(self, rtype: str, rule: WriteRule) -> None:
        self.by_type.setdefault(rtype, []).append(rule)

    def of(self, rtype: str) -> tuple[WriteRule, ...]:
        return tuple(self.by_type.get(rtype, ()))
