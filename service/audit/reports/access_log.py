"""`GET [base]/Patient/{id}/$access-log`: who has looked at this person's record.

From the audit rows that concern the patient (`audit_log.patient_id`, and `audit_also` for accesses that reached
several people), newest first, never an AuditEvent a partner system reported: when, who
(staff name), role, organisation, what (interaction, resource type), purpose of use, whether it was an
emergency (break-glass) access, and the outcome. Names come from the Practitioner / Organization (or
Patient / RelatedPerson) resources in one query for the whole page, not one per event.
Returns a Parameters resource with one `access` parameter per event. `_count` (default 100, max 1000).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from service.audit import codes as c
from service.audit.render import render
from service.audit.reports.common import display_name, is_ig
from service.audit.tables import audit_also as X
from service.audit.tables import audit_log as A
from service.fhir.outcome import OperationOutcomeError, bad_request, forbidden
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository

DEFAULT_COUNT, MAX_COUNT = 100, 1000


def _agent(event: dict[str, Any], type_code: str) -> dict[str, Any] | None:
    for a in event.get("agent") or []:
        if any(cd.get("code") == type_code for cd in (a.get("type") or {}).get("coding", [])):
            return a
    return None


def _role(agent: dict[str, Any] | None) -> str | None:
    if agent is None:
        return None
    codings = [cd for r in agent.get("role") or [] for cd in r.get("coding", [])]
    for system in (c.SDS_JOB_ROLE, c.SERVICE_ROLE):
        for cd in codings:
            if cd.get("system") == system and not str(cd.get("code", "")).startswith("kind:"):
                return cd.get("display") or cd.get("code")
    return None


def _what(event: dict[str, Any]) -> tuple[str | None, str | None]:
    interaction = None
    for cd in event.get("subtype") or []:
        interaction = cd.get("code")
        break
    rtype = None
    for ent in event.get("entity") or []:
        role = (ent.get("role") or {}).get("code")
        if role == "4":
            ref = (ent.get("what") or {}).get("reference", "")
            rtype = ref.split("/", 1)[0] or None
            break
        if role == "24":
            desc = ent.get("description", "")
            rtype = desc.split(" ", 1)[-1].split("?", 1)[0].split("/", 1)[0] or None
            break
    return interaction, rtype


def _ref(agent: dict[str, Any] | None) -> str | None:
    ref = ((agent or {}).get("who") or {}).get("reference")
    return ref if isinstance(ref, str) and ref.count("/") == 1 else None


def access_log(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    assert rid is not None
    p = repo.principal
    if p is None:
        raise OperationOutcomeError(401, "login", "$access-log needs an authenticated caller")
    if not is_ig(p) and p.kind != "patient":
        raise forbidden("Who has looked at a person's record is for the person themselves and the information-"
                        "governance lead")
    repo._access.scopes.check_type(repo.ctx, "read", "AuditEvent")
    repo.read("Patient", rid)  # a record the caller may not see answers as one that does not exist
    if not is_ig(p) and p.patient != rid:
        raise forbidden("You may see who has looked at your own record")
    raw = req.param("_count")
    if raw is not None and not raw.isdigit():
        raise bad_request(f"_count={raw!r} must be a whole number")
    count = min(int(raw) if raw is not None else DEFAULT_COUNT, MAX_COUNT)
    # the person's own rows and those where they were one of several; never what a partner reported
    mine = select(A).where(A.c.patient_id == rid, A.c.kind != "partner").order_by(A.c.seq.desc()).limit(count)
    also = select(A).join(X, X.c.seq == A.c.seq).where(X.c.patient_id == rid, A.c.kind != "partner") \
        .order_by(A.c.seq.desc()).limit(count)
    rows = sorted({r.seq: r for q in (mine, also) for r in repo._conn.execute(q)}.values(),
                  key=lambda r: -r.seq)[:count]
    events = [render(r, repo.base) for r in rows]
    refs: set[tuple[str, str]] = set()
    for ev in events:
        for agent in (_agent(ev, "IRCP"), _agent(ev, "PROV")):
            ref = _ref(agent)
            if ref:
                refs.add(tuple(ref.split("/", 1)))  # type: ignore[arg-type]
    named = {f"{t}/{i}": s.json() for (t, i), s in repo.server().lookup(sorted(refs)).items()}  # actors' names
    params = [{"name": "patient", "valueReference": {"reference": f"Patient/{rid}"}},
              {"name": "count", "valueInteger": len(events)}]
    for ev in events:
        params.append({"name": "access", "part": _access_parts(ev, named)})
    body = {"resourceType": "Parameters", "parameter": params}
    return FhirResponse(200, orjson.dumps(body))


def _access_parts(ev: dict[str, Any], named: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    user, org, client = _agent(ev, "IRCP"), _agent(ev, "PROV"), _agent(ev, "110153")
    user_ref, org_ref = _ref(user), _ref(org)
    who = display_name(named.get(user_ref or "")) or (user or {}).get("altId") or \
        (((client or {}).get("who") or {}).get("identifier") or {}).get("value") or \
        ((user or {}).get("who") or {}).get("display") or "unknown"
    org_name = display_name(named.get(org_ref or "")) or \
        (((org or {}).get("who") or {}).get("identifier") or {}).get("value")
    interaction, rtype = _what(ev)
    purposes = [cd.get("code") for pe in ev.get("purposeOfEvent") or [] for cd in pe.get("coding", [])]
    parts: list[dict[str, Any]] = [{"name": "when", "valueInstant": ev["recorded"]},
                                   {"name": "who", "valueString": who}]
    if user_ref:
        parts.append({"name": "whoReference", "valueReference": {"reference": user_ref, "display": who}})
    role = _role(user)
    if role:
        parts.append({"name": "role", "valueString": role})
    if org_name:
        parts.append({"name": "organisation", "valueString": org_name})
    if org_ref:
        parts.append({"name": "organisationReference", "valueReference": {"reference": org_ref}})
    if interaction:
        parts.append({"name": "interaction", "valueCode": interaction})
    if rtype:
        parts.append({"name": "resourceType", "valueString": rtype})
    for p in purposes:
        parts.append({"name": "purpose", "valueCode": p})
    parts.append({"name": "breakGlass", "valueBoolean": "BTG" in purposes})
    reason = next((pe.get("text") for pe in ev.get("purposeOfEvent") or [] if pe.get("text")), None)
    if reason:  # the break-glass reason the professional gave (the person sees why)
        parts.append({"name": "reason", "valueString": reason})
    parts.append({"name": "outcome", "valueCode": ev.get("outcome", "0")})
    parts.append({"name": "event", "valueReference": {"reference": f"AuditEvent/{ev['id']}"}})
    return parts


OPERATIONS = (
    Operation(name="access-log", level="instance", types=("Patient",), methods=("GET",), handler=access_log),
)
