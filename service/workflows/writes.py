"""The write rules of the workflow's resources, run by the repository on every write of them (plain REST,
Bundle entries and the `$operations` alike), and the operations' shorthand for writing through it.

Rules per type (`RULES`): QuestionnaireResponse (service.workflows.assessment_rules: answers checked against
the Questionnaire version the response pinned, status changes, item authorship, what a patient may change),
CarePlan (service.workflows.careplan_rules: the status state machine, the agreement record), CareTeam
(service.workflows.careteam_rules: at most one lead). Goal has no rule beyond Provenance. After the write,
the Provenance of the version (service.workflows.provenance), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.fhir.stored import Stored
from service.repository import Change, Repository
from service.workflows import provenance

__all__ = ["Change", "WorkflowRules", "create", "load", "update"]

Rule = Callable[[Repository, "dict[str, Any] | None", "dict[str, Any]", Change], None]


def _rules() -> dict[str, Rule]:
    from service.workflows import assessment_rules, careplan_rules, careteam_rules

    return {"QuestionnaireResponse": assessment_rules.prepare, "CarePlan": careplan_rules.prepare,
            "CareTeam": careteam_rules.prepare}


class WorkflowRules:
    """The repository's write rule for the tracked types (service.repository.rules.WriteRule)."""

    def before(self, repo: Repository, rtype: str, before: dict[str, Any] | None, after: dict[str, Any],
               change: Change) -> None:
        rule = _rules().get(rtype)
        if rule is not None:
            rule(repo, before, after, change)

    def after(self, repo: Repository, stored: Stored, before: dict[str, Any] | None, change: Change) -> None:
        provenance.record(repo, stored, created=before is None, activity=change.activity, reason=change.reason,
                          sources=change.sources)


def load(repo: Repository, rtype: str, rid: str, interaction: str = "update") -> Stored:
    """The current version, locked for the write (404/410/403 as the repository answers)."""
    return repo.locked(rtype, rid, interaction)


def create(repo: Repository, resource: dict[str, Any], change: Change) -> Stored:
    return repo.create(resource, change=change)


def update(repo: Repository, current: Stored, resource: dict[str, Any], change: Change) -> Stored:
    """Write `resource` as the next version after `current` (which `load` locked)."""
    return repo.write_next(current, resource, change)
