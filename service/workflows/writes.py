"""The one write path for the workflow's resources, shared by plain REST and the $operations.

Plain REST (create, update, patch, transaction entries) reaches the rules through the per-type hooks
that `service.interactions.crud` calls (`Services.extras["write_hooks"]`, installed by
`service.workflows.install`); the operations call `create`/`update` here, which run the same rules,
the access guard, base validation and the store, then record the Provenance, all in the caller's
transaction.

Rules per type (`RULES`): QuestionnaireResponse (service.workflows.assessment_rules: answers checked
against the Questionnaire version the response pinned, status changes, item authorship), CarePlan
(service.workflows.careplan_rules: the status state machine, the agreement record), CareTeam
(service.workflows.careteam_rules: at most one lead). Goal has no rule beyond Provenance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.fhir.outcome import gone, not_found
from service.fhir.validation import validate_resource
from service.interactions.session import Session
from service.storage.store import Stored
from service.workflows import provenance


@dataclass
class Change:
    """What the caller is doing, for the rules and the Provenance."""

    activity: str | None = None  # a codes.WORKFLOW_ACTIVITY code
    reason: str | None = None
    sources: list[str] = field(default_factory=list)  # Provenance entities the version was derived from
    prefilled: dict[str, str] = field(default_factory=dict)  # unit linkId -> source reference (pre-fill)
    agreed_with: dict[str, Any] | None = None  # CarePlan: who the plan was agreed with


Rule = Callable[[Session, "dict[str, Any] | None", "dict[str, Any]", Change], None]


def _rules() -> dict[str, Rule]:
    from service.workflows import assessment_rules, careplan_rules, careteam_rules

    return {"QuestionnaireResponse": assessment_rules.prepare, "CarePlan": careplan_rules.prepare,
            "CareTeam": careteam_rules.prepare}


def apply_rules(session: Session, rtype: str, before: dict[str, Any] | None, after: dict[str, Any],
                change: Change) -> None:
    rule = _rules().get(rtype)
    if rule is not None:
        rule(session, before, after, change)


class WorkflowHooks:
    """The hook object crud calls for the tracked types (see crud._write_hooks)."""

    def before(self, session: Session, rtype: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        apply_rules(session, rtype, before, after, Change())

    def after(self, session: Session, rtype: str, stored: Stored, before: dict[str, Any] | None) -> None:
        provenance.record(session, stored, created=before is None)


def load(session: Session, rtype: str, rid: str, interaction: str = "update") -> Stored:
    """The current version, row-locked for the write, after the guard's type and resource checks."""
    session.guard.check_type(session.ctx, interaction, rtype)
    cur = session.store.current(session.conn, rtype, rid, lock=True)
    if cur is None:
        raise not_found(f"{rtype}/{rid} is not known")
    if cur.deleted or cur.content is None:
        raise gone(f"{rtype}/{rid} was deleted")
    if not session.guard.can_see(session.ctx, rtype, cur.json()):
        raise not_found(f"{rtype}/{rid} is not known")
    session.guard.check_resource(session.ctx, interaction, rtype, cur.json())
    return cur


def create(session: Session, resource: dict[str, Any], change: Change) -> Stored:
    rtype = resource["resourceType"]
    session.guard.check_type(session.ctx, "create", rtype)
    apply_rules(session, rtype, None, resource, change)
    validate_resource(resource, expected_type=rtype)
    session.guard.check_resource(session.ctx, "create", rtype, resource)
    stored = session.store.create(session.conn, resource)
    provenance.record(session, stored, created=True, activity=change.activity, reason=change.reason,
                      sources=change.sources)
    return stored


def update(session: Session, current: Stored, resource: dict[str, Any], change: Change) -> Stored:
    """Write `resource` as the next version after `current` (which `load` locked)."""
    rtype = current.res_type
    resource["id"] = current.res_id
    apply_rules(session, rtype, current.json(), resource, change)
    validate_resource(resource, expected_type=rtype)
    session.guard.check_resource(session.ctx, "update", rtype, resource)
    stored, _ = session.store.update(session.conn, resource, current.res_id, if_match=current.version,
                                     allow_create=False)
    provenance.record(session, stored, created=False, activity=change.activity, reason=change.reason,
                      sources=change.sources)
    return stored
