"""$add-member and $remove-member: maintaining a person's care team across organisations.

The CareTeam (subject = the Patient) is the source of truth for care relationships: the access policy
derives "in the person's care team" from its current participants. The lead (the lead accountable
professional, who owns the care plan) is the participant with role SNOMED CT 768820003
|Care coordinator (occupation)|; there is at most one (service.workflows.careteam_rules).

`POST /fhir/CareTeam/{id}/$add-member` with Parameters:
  member      valueReference, required: Practitioner | PractitionerRole | RelatedPerson | Patient |
              Organization | CareTeam (it must exist)
  onBehalfOf  valueReference Organization/...: the organisation they act for (default: the
              organisation of the practitioner's one PractitionerRole, when there is exactly one)
  role        valueCoding or valueCodeableConcept: their role in the team
  lead        valueBoolean: true makes them the lead (a Practitioner or PractitionerRole; the care
              coordinator role moves to them from anyone else; giving that role as `role` means the
              same), false takes the lead role from them
  reason      valueString: why (kept in the Provenance)
Adding someone already in the team updates their entry. Answers 200 with the CareTeam. A team never
has two leads (422 on any write that would give it two, PUT and PATCH included).

`POST /fhir/CareTeam/{id}/$remove-member` with Parameters `member` (required) and `reason`:
removes them (404 if they are not a member). Both keep the team's earlier versions in its history and
record a Provenance (activity add-member / remove-member). Plain PUT of a CareTeam works too (with
a Provenance); these operations save clients from editing the participant list by hand.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from service.fhir.outcome import OperationOutcomeError, bad_request, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.operations import Operation
from service.repository import Repository
from service.workflows import lookup, writes
from service.workflows.careteam_rules import LEAD_ROLE, is_lead_role
from service.workflows.params import Params

MEMBER_TYPES = ("Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Organization", "CareTeam")


def _role(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict) and ("coding" in value or "text" in value):
        return value
    if isinstance(value, dict) and "code" in value:
        return {"coding": [value]}
    raise bad_request("Parameter 'role' must be a Coding or CodeableConcept")


def _default_organisation(repo: Repository, member: str) -> str | None:
    if not member.startswith("Practitioner/"):
        return None
    roles = lookup.find(repo, "PractitionerRole", [("practitioner", member)],
                        lambda r: lookup.ref(r, "practitioner") == member and r.get("active", True))
    orgs = {lookup.ref(s.json(), "organization") for s in roles} - {None}
    return orgs.pop() if len(orgs) == 1 else None


def add_member(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    params = Params(req)
    member = params.reference("member")
    if member is None:
        raise bad_request("Parameter 'member' (a reference such as Practitioner/abc) is required", code="required")
    mtype, _, mid = member.partition("/")
    if mtype not in MEMBER_TYPES:
        raise bad_request(f"A care team member must be one of {', '.join(MEMBER_TYPES)}, not {mtype}")
    on_behalf = params.reference("onBehalfOf", "Organization")
    role = _role(params.value("role"))
    lead_value = params.value("lead")
    if lead_value not in (None, True, False, "true", "false"):
        raise bad_request(f"Parameter 'lead' must be true or false, not {lead_value!r}")
    lead = lead_value in (True, "true") or (role is not None and is_lead_role(role))
    if lead and mtype not in ("Practitioner", "PractitionerRole"):
        raise bad_request(f"The lead (care coordinator) is a professional: a Practitioner or PractitionerRole, "
                          f"not {mtype}")
    if lead and role is not None and is_lead_role(role):
        role = None  # the lead role is given below, in its one standard form
    cur = writes.load(repo, "CareTeam", rid)
    if repo.get(mtype, mid) is None:
        raise OperationOutcomeError(422, "not-found", f"{member} is not known, so it cannot join CareTeam/{rid}")
    if on_behalf is None:
        on_behalf = _default_organisation(repo, member)
    team = {k: copy.deepcopy(v) for k, v in cur.json().items() if k != "meta"}
    participants = team.setdefault("participant", [])
    entry = next((p for p in participants if (p.get("member") or {}).get("reference") == member), None)
    if entry is None:
        entry = {"member": {"reference": member},
                 "period": {"start": datetime.now(UTC).date().isoformat()}}
        participants.append(entry)
    if on_behalf:
        entry["onBehalfOf"] = {"reference": on_behalf}
    roles = [r for r in entry.get("role") or () if not (role and r == role)]
    if role:
        roles.append(role)
    if lead:
        for p in participants:
            p["role"] = [r for r in p.get("role") or () if not is_lead_role(r)] or None
            if p["role"] is None:
                p.pop("role")
        roles = [r for r in roles if not is_lead_role(r)] + [LEAD_ROLE]
    elif lead_value in (False, "false"):
        roles = [r for r in roles if not is_lead_role(r)]  # no longer the lead
    if roles:
        entry["role"] = roles
    else:
        entry.pop("role", None)
    stored = writes.update(repo, cur, team, writes.Change(activity="add-member", reason=params.string("reason")))
    return write_response(req, stored, 200, repo.base, f"{member} is in CareTeam/{rid}")


def remove_member(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    params = Params(req)
    member = params.reference("member")
    if member is None:
        raise bad_request("Parameter 'member' is required", code="required")
    cur = writes.load(repo, "CareTeam", rid)
    team = {k: copy.deepcopy(v) for k, v in cur.json().items() if k != "meta"}
    kept = [p for p in team.get("participant") or () if (p.get("member") or {}).get("reference") != member]
    if len(kept) == len(team.get("participant") or ()):
        raise not_found(f"{member} is not a member of CareTeam/{rid}")
    if kept:
        team["participant"] = kept
    else:
        team.pop("participant", None)
    stored = writes.update(repo, cur, team, writes.Change(activity="remove-member", reason=params.string("reason")))
    return write_response(req, stored, 200, repo.base, f"{member} left CareTeam/{rid}")


OPERATIONS = (
    Operation("add-member", "instance", ("CareTeam",), ("POST",), add_member, writes=True),
    Operation("remove-member", "instance", ("CareTeam",), ("POST",), remove_member, writes=True),
)
