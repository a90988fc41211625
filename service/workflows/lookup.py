"""Finding the workflow's resources through the repository: search criteria (standard R4 parameters) and an
exact `predicate`, among what the caller may see, so nothing leaks through these lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from service.fhir.stored import Stored
from service.repository import Repository

Predicate = Callable[[dict[str, Any]], bool]


def find(repo: Repository, rtype: str, criteria: list[tuple[str, str]], predicate: Predicate) -> list[Stored]:
    return repo.find(rtype, criteria, predicate)


def ref(resource: dict[str, Any], element: str) -> str | None:
    value = resource.get(element)
    return value.get("reference") if isinstance(value, dict) else None


CURRENT_TEAM = ("proposed", "active", "suspended")


def care_teams_of_patient(repo: Repository, patient_ref: str) -> list[dict[str, Any]]:
    """The person's current care teams (proposed, active or suspended), active ones first."""
    found = find(repo, "CareTeam", [("subject", patient_ref)],
                 lambda r: ref(r, "subject") == patient_ref and r.get("status", "active") in CURRENT_TEAM)
    return sorted((s.json() for s in found), key=lambda t: t.get("status", "active") != "active")


def _ended(period: Any, today: str) -> bool:
    end = period.get("end") if isinstance(period, dict) else None
    return isinstance(end, str) and end[:10] < today


def members(team: dict[str, Any]) -> list[str]:
    """Who is in the team now: participants of an active team (the care relationships the access policy
    counts) whose own period, and the team's, have not ended."""
    today = datetime.now(UTC).date().isoformat()
    if team.get("status", "active") != "active" or _ended(team.get("period"), today):
        return []
    return [p["member"]["reference"] for p in team.get("participant") or ()
            if isinstance(p, dict) and isinstance(p.get("member"), dict) and p["member"].get("reference")
            and not _ended(p.get("period"), today)]


def care_teams_of_member(repo: Repository, member_ref: str) -> list[dict[str, Any]]:
    """The active care teams `member_ref` is in now."""
    found = find(repo, "CareTeam", [("participant", member_ref)], lambda r: member_ref in members(r))
    return [s.json() for s in found]
