"""The IG lead's break-glass review queue (service.policy.break_glass), as two system-level operations.

`GET [base]/$break-glass-queue[?status=pending|reviewed|all][&patient=ID][&_count=N][&before=instant]`
    Grants newest first (default: pending, 100, at most 1000). Parameters: `status` (the filter), `total`
    (grants matching it), `count` (in this answer), then one `grant` per grant (see `grant_parts`).
    `before` (an instant: the `opened` of the last grant seen) pages back through older grants.

`POST [base]/$break-glass-review` with Parameters
    grant    valueString/valueId, required: the grant id
    outcome  valueCode, required: appropriate | inappropriate
    note     valueString: required when the outcome is inappropriate
    close    valueBoolean, default true: end the grant now (no further access under it)
    -> 200 Parameters with the updated `grant`; 404 unknown grant; 409 already reviewed; 403 for one's own
    grant (nobody reviews their own emergency access); 400 malformed or missing parameters, 422 an
    inappropriate outcome without a note (each OperationOutcome names the parameter).

Only the IG lead and administrators may use them (common.require_ig). Both are audited by the
pipeline like any operation; a review also adds a policy note (grant, patient, outcome) to its event.
Names (staff, organisations) are resolved in one query per page.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import func, select

from service.audit import codes as c
from service.audit.reports.common import names, org_parts, param_error, require_ig
from service.clock import fhir_instant, now_us
from service.fhir.outcome import conflict, forbidden, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.policy import break_glass as bg
from service.policy.tables import break_glass as T
from service.repository import Repository
from service.search.values import date_range
from service.workflows.params import Params

DEFAULT_COUNT, MAX_COUNT = 100, 1000
STATUSES = {"pending": bg.PENDING, "reviewed": bg.REVIEWED, "all": None}
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _count(params: Params) -> int:
    raw = params.value("_count")
    if raw is None:
        return DEFAULT_COUNT
    if isinstance(raw, bool) or not str(raw).strip().isdigit() or int(str(raw)) < 1:
        raise param_error("_count", f"Parameter '_count' must be a whole number from 1 to {MAX_COUNT}, not {raw!r}")
    return min(int(str(raw)), MAX_COUNT)


def _patient(params: Params) -> str | None:
    raw = params.string("patient")
    if raw is None:
        return None
    pid = raw.removeprefix("Patient/")
    if not _ID.match(pid):
        raise param_error("patient", f"Parameter 'patient' must be a Patient id or 'Patient/id', not {raw!r}")
    return pid


def grant_parts(g: bg.Grant, named: dict[str, str], at_us: int) -> list[dict[str, Any]]:
    """One grant as Parameters parts."""
    who: list[dict[str, Any]] = [{"name": "user", "valueString": g.subject}]
    name = named.get(g.fhir_user or "")
    if g.fhir_user:
        who.append({"name": "reference", "valueReference": {"reference": g.fhir_user,
                                                            **({"display": name} if name else {})}})
    if name:
        who.append({"name": "name", "valueString": name})
    parts: list[dict[str, Any]] = [
        {"name": "id", "valueString": g.id},
        {"name": "patient", "valueReference": {"reference": f"Patient/{g.patient_id}"}},
        {"name": "who", "part": who},
    ]
    org = org_parts(g.organisation, g.ods_code, named.get(g.organisation or ""))
    if org:
        parts.append({"name": "organisation", "part": org})
    if g.role_code:
        parts.append({"name": "role", "valueCoding": c.coding(c.SDS_JOB_ROLE, g.role_code,
                                                              c.JOB_ROLES.get(g.role_code))})
    parts += [
        {"name": "reason", "valueString": g.reason},
        {"name": "opened", "valueInstant": fhir_instant(g.opened_us)},
        {"name": "expires", "valueInstant": fhir_instant(g.expires_us)},
        {"name": "open", "valueBoolean": g.active(at_us)},
        {"name": "accesses", "valueInteger": g.accesses},
    ]
    if g.last_access_us is not None:
        parts.append({"name": "lastAccess", "valueInstant": fhir_instant(g.last_access_us)})
    parts.append({"name": "status", "valueCode": g.status})
    if g.outcome:
        parts.append({"name": "outcome", "valueCode": g.outcome})
    if g.reviewer:
        parts.append({"name": "reviewer", "valueString": g.reviewer})
    if g.reviewed_us is not None:
        parts.append({"name": "reviewed", "valueInstant": fhir_instant(g.reviewed_us)})
    if g.note:
        parts.append({"name": "note", "valueString": g.note})
    parts.append({"name": "requestId", "valueString": g.request_id})
    # The AuditEvents of the accesses made under this grant (a search the IG lead can follow).
    query = urlencode([("purpose", "BTG"), ("patient", f"Patient/{g.patient_id}"), ("altid", g.subject),
                       ("date", "ge" + fhir_instant(g.opened_us))])
    parts.append({"name": "auditEvents", "valueString": f"AuditEvent?{query}"})
    return parts


def _names_for(repo: Repository, grants: list[bg.Grant]) -> dict[str, str]:
    return names(repo, [r for g in grants for r in (g.fhir_user, g.organisation) if r])


def _body(params: list[dict[str, Any]]) -> FhirResponse:
    return FhirResponse(200, orjson.dumps({"resourceType": "Parameters", "parameter": params}))


def queue(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    require_ig(repo, "break-glass-queue")
    params = Params(req)
    status_text = params.string("status") or "pending"
    if status_text not in STATUSES:
        raise param_error("status", f"Parameter 'status' must be pending, reviewed or all, not {status_text!r}")
    status = STATUSES[status_text]
    patient_id = _patient(params)
    count = _count(params)
    before = None
    before_text = params.string("before")
    if before_text is not None:
        rng = date_range(before_text)
        if rng is None:
            raise param_error("before", f"Parameter 'before' must be an instant such as the 'opened' of a grant, "
                                        f"not {before_text!r}")
        before = rng[0]
    grants = bg.queue(repo._conn, status=status, patient_id=patient_id, limit=count, before_us=before)
    total_q = select(func.count()).select_from(T)
    if status is not None:
        total_q = total_q.where(T.c.status == status)
    if patient_id is not None:
        total_q = total_q.where(T.c.patient_id == patient_id)
    total = repo._conn.execute(total_q).scalar_one()
    named = _names_for(repo, grants)
    at = now_us()
    out: list[dict[str, Any]] = [{"name": "status", "valueCode": status_text},
                                 {"name": "total", "valueInteger": total},
                                 {"name": "count", "valueInteger": len(grants)}]
    out += [{"name": "grant", "part": grant_parts(g, named, at)} for g in grants]
    return _body(out)


def _boolean(params: Params, name: str, default: bool) -> bool:
    v = params.value(name)
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise param_error(name, f"Parameter '{name}' must be a boolean (true or false), not {v!r}")


def review(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    p = require_ig(repo, "break-glass-review")
    params = Params(req)
    gid = params.string("grant")
    if gid is None:
        raise param_error("grant", "Parameter 'grant' (the id of the grant to review) is required", code="required")
    outcome = params.string("outcome")
    if outcome is None:
        raise param_error("outcome", "Parameter 'outcome' is required: appropriate or inappropriate",
                          code="required")
    if outcome not in bg.OUTCOMES:
        raise param_error("outcome", f"Parameter 'outcome' must be appropriate or inappropriate, not {outcome!r}",
                          code="value")
    note = params.string("note")
    if outcome == "inappropriate" and not note:
        raise param_error("note", "Parameter 'note' is required when the outcome is inappropriate: say what was "
                                  "wrong and what follows", status=422, code="required")
    close = _boolean(params, "close", True)
    # Lock the grant's row (PostgreSQL; SQLite serialises writers): of two concurrent reviews, one wins
    # and the other sees it reviewed.
    row = repo._conn.execute(select(T.c.id, T.c.status, T.c.subject).where(T.c.id == gid)
                               .with_for_update()).first()
    if row is None:
        raise not_found(f"There is no break-glass grant {gid!r}")
    if row.status != bg.PENDING:
        raise conflict(f"Break-glass grant {gid!r} has already been reviewed")
    if row.subject == p.subject:
        raise forbidden("Nobody may review their own break-glass access; another IG lead or administrator must")
    grant = bg.review(repo._conn, gid, reviewer=p.subject, outcome=outcome, note=note, close=close)
    assert grant is not None
    repo.record.note(f"break-glass review: grant {gid} for Patient/{grant.patient_id} by {grant.subject}: "
                            f"{outcome}{' (closed)' if close else ''}")
    return _body([{"name": "grant", "part": grant_parts(grant, _names_for(repo, [grant]), now_us())}])


OPERATIONS = (
    Operation(name="break-glass-queue", level="system", types=(), methods=("GET",), handler=queue),
    Operation(name="break-glass-review", level="system", types=(), methods=("POST",), handler=review, writes=True),
)
