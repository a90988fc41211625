"""The person's care team: who leads it, and the rule every write of a CareTeam follows.

The lead (the lead accountable professional, who owns the care plan) is the participant whose role is
SNOMED CT 768820003 |Care coordinator (occupation)|. A care team has at most one lead: a write (PUT,
PATCH, POST, transaction entry or $add-member) that would give it two is refused with 422 naming them.

Care teams written before this code was corrected carry 768730001 (which SNOMED CT defines as
|Home health aide (occupation)|, not a care coordinator) with the display "Care coordinator"; that
exact pairing is still read as the lead, so existing records keep their lead. New leads get 768820003.
"""

from __future__ import annotations

from typing import Any

from service.fhir.outcome import OperationOutcomeError
from service.repository import Change, Repository
from service.workflows.codes import CARE_COORDINATOR, SNOMED

LEAD_ROLE = {"coding": [{"system": SNOMED, "code": CARE_COORDINATOR, "display": "Care coordinator"}]}
_LEGACY_LEAD = "768730001"


def is_lead_role(role: Any) -> bool:
    for c in (role.get("coding") or ()) if isinstance(role, dict) else ():
        if not isinstance(c, dict) or c.get("system") not in (SNOMED, None):
            continue
        if c.get("code") == CARE_COORDINATOR:
            return True
        if c.get("code") == _LEGACY_LEAD and str(c.get("display", "")).lower() == "care coordinator":
            return True
    return False


def is_lead(participant: dict[str, Any]) -> bool:
    return any(is_lead_role(r) for r in participant.get("role") or ())


def leads(team: dict[str, Any]) -> list[str]:
    """The member references of the participants holding the lead role."""
    return [p["member"]["reference"] for p in team.get("participant") or ()
            if isinstance(p, dict) and is_lead(p) and isinstance(p.get("member"), dict)
            and p["member"].get("reference")]


def lead_of(teams: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The lead of the first of `teams` that has one, as a Reference."""
    for team in teams:
        found = leads(team)
        if found:
            return {"reference": found[0]}
    return None


def prepare(repo: Repository, before: dict[str, Any] | None, after: dict[str, Any], change: Change) -> None:
    found = leads(after)
    if len(found) > 1:
        raise OperationOutcomeError(
            422, "business-rule", f"A care team has one lead (care coordinator); this one would have "
            f"{len(found)}: {', '.join(found)}", expression=("CareTeam.participant.role",))
