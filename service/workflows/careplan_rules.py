"""The care plan's life: its status state machine and the record of who agreed it.

    draft ──► active ◄──► on-hold
      │         │            │
      └─► revoked ◄──────────┤        active / on-hold ──► completed
                                       any status ──► entered-in-error (a correction; final)

completed, revoked and entered-in-error are final. Any other change of status (through
`CarePlan/{id}/$transition`, PUT or PATCH) is refused with 409 naming both states and what is allowed.
When a plan goes from draft to active the server records the agreement
(codes.AGREEMENT: agreedBy = the caller, agreedWith = the person unless given, date = now); once
recorded it is kept on every later version and cannot be changed by clients.
"""

from __future__ import annotations

from typing import Any

from service.fhir.outcome import OperationOutcomeError
from service.repository import Change, Repository
from service.workflows import actors
from service.workflows.codes import AGREEMENT, STATUS_REASON, set_ext

STATUSES = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "revoked", "entered-in-error"}),
    "active": frozenset({"on-hold", "completed", "revoked", "entered-in-error"}),
    "on-hold": frozenset({"active", "completed", "revoked", "entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "revoked": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
    "unknown": frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error"}),
}


def check_transition(rid: str | None, old: str, new: Any) -> None:
    if new == old:
        return
    if new not in STATUSES:
        raise OperationOutcomeError(400, "code-invalid", f"{new!r} is not a CarePlan status (one of "
                                    f"{', '.join(STATUSES)})", expression=("CarePlan.status",))
    allowed = TRANSITIONS.get(old, frozenset())
    if new not in allowed:
        raise OperationOutcomeError(
            409, "business-rule",
            f"CarePlan/{rid} is {old}; it cannot become {new} (from {old} it can become: "
            f"{', '.join(sorted(allowed)) or 'nothing, it is final'})", expression=("CarePlan.status",))


def _agreement(resource: dict[str, Any] | None) -> dict[str, Any] | None:
    for ext in (resource or {}).get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == AGREEMENT:
            return ext
    return None


def prepare(repo: Repository, before: dict[str, Any] | None, after: dict[str, Any], change: Change) -> None:
    old = (before or {}).get("status")
    new = after.get("status")
    if before is not None:
        check_transition(before.get("id"), old, new)
    agreement = _agreement(before)
    set_ext(after, AGREEMENT, None)
    if agreement is None and new == "active" and old == "draft":
        agreed_with = change.agreed_with or after.get("subject") or {}
        agreement = {"url": AGREEMENT, "extension": [
            {"url": "agreedBy", "valueReference": actors.who(repo)},
            {"url": "agreedWith", "valueReference": agreed_with},
            {"url": "date", "valueDateTime": actors.now()}]}
    if agreement is not None:
        after.setdefault("extension", []).append(agreement)
    if change.reason and old != new:
        set_ext(after, STATUS_REASON, {"valueString": change.reason})
