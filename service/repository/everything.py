"""Patient/$everything, for one patient and at type level (https://hl7.org/fhir/R4/patient-operation-everything.html).

- `Patient/[id]/$everything`: the patient's compartment plus what it references outside any compartment
  (Practitioner, Organization, ...); `Patient/$everything`: the same for every patient the caller may see.
- `start`, `end` (dates): care dates, not record currency: a resource with clinical dates (any date search
  parameter other than `_lastUpdated`) is in when one of them overlaps [start, end]; undated resources and the
  Patient are always in. `_since` (an instant, or a partial date): changed since then. `_type`, `_count`.
- The audit trail is not the record: AuditEvents are left out unless `_type` names AuditEvent (and the caller may
  search them). With other types too, the record comes first and its last page links on to the AuditEvents.
Everything runs under the search engine's access condition, so paging and totals never see a hidden row; a
hidden patient answers as a missing one.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import exists, literal, or_, select

from service.fhir.outcome import bad_request, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.ownership import patient_data_types as compartment_types
from service.repository.history import parse_period
from service.search.includes import IncludeSpec
from service.search.run import (
    Plan,
    _base_conds,
    _control,
    _in_compartment,
    _unknown,
    execute,
)
from service.search.tables import sp_compartment, sp_date
from service.search.values import date_range
from service.storage.tables import resource as R

AUDIT = "AuditEvent"
TAKES = "$everything takes start, end, _since, _type and _count"


def _date(name: str, value: str, end: bool) -> int:
    rng = date_range(value)
    if rng is None:
        raise bad_request(f"{name}={value!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD)")
    return rng[1] if end else rng[0]


def _care_dates(low: int | None, high: int | None) -> Any:
    """In [low, high] by care date: the Patient, anything with no clinical date, or a clinical date overlapping."""
    def dates(*extra: Any) -> Any:
        return exists(select(literal(1)).select_from(sp_date).where(
            sp_date.c.res_type == R.c.res_type, sp_date.c.res_id == R.c.res_id, sp_date.c.param != "_lastUpdated",
            *extra))

    overlap = []
    if high is not None:
        overlap.append(sp_date.c.low <= high)
    if low is not None:
        overlap.append(sp_date.c.high >= low)
    return or_(R.c.res_type == "Patient", ~dates(), dates(*overlap))


def everything(req: FhirRequest, repo: Any, pid: str | None) -> FhirResponse:
    repo.require("search-type", "Patient")
    if pid is not None:
        # the same decision as a read: a hidden patient is a missing one; one the person's choices withhold is 403
        patient, _ = repo._visible_current("read", "Patient", pid)
        if patient is None or patient.deleted:
            raise not_found(f"Patient/{pid} is not known")
    path = f"Patient/{pid}/$everything" if pid else "Patient/$everything"
    plan = Plan(rtype=None, path=path)
    since = start = end = None
    passed: list[tuple[str, str]] = []  # what an AuditEvent page passes on to the audit trail's search
    for key, value in req.params:
        if key == "_cursor":
            plan.cursor = value
        elif key in ("_count", "_type"):
            _control(req, plan, key, value)
        elif key == "_since":
            since = parse_period(value, "_since")[0]
            plan.applied.append((key, value))
            passed.append(("_lastUpdated", f"ge{value}"))
        elif key in ("start", "end"):
            if key == "start":
                start = _date(key, value, end=False)
            else:
                end = _date(key, value, end=True)
            plan.applied.append((key, value))
            passed.append(("date", f"{'ge' if key == 'start' else 'le'}{value}"))
        elif key in ("date", "_lastUpdated") and _audit_only(req):
            passed.append((key, value))  # (the audit trail's own links, on its later pages)
        else:
            _unknown(req, plan, key, TAKES)
    asked = set(plan.types or ())
    audit = AUDIT in asked and repo.may("search-type", AUDIT)
    if audit and asked == {AUDIT}:
        return _audit_events(req, repo, pid, path, passed)
    ctypes = compartment_types()
    types = set(plan.types) - {AUDIT} if plan.types else set(ctypes)
    if pid is not None:
        present = {r[0] for r in repo._conn.execute(
            select(sp_compartment.c.res_type).where(sp_compartment.c.patient_id == pid).distinct())}
        types &= present | {"Patient"}
    else:
        types &= set(ctypes) | {"Patient"}
    # $everything leaves out what the caller may not search, and the audit trail (it is about accesses)
    plan.types = sorted(t for t in types if t != AUDIT and repo.may("search-type", t)) or ["Patient"]
    if pid is not None:
        conds = _base_conds(plan) + _in_compartment(plan, pid)
    else:
        in_a_compartment = exists(select(literal(1)).select_from(sp_compartment).where(
            sp_compartment.c.res_type == R.c.res_type, sp_compartment.c.res_id == R.c.res_id))
        conds = [*_base_conds(plan), or_(R.c.res_type == "Patient", in_a_compartment)]
    if since is not None:
        conds.append(R.c.last_updated >= since)
    if start is not None or end is not None:
        if start is not None and end is not None and start > end:
            raise bad_request("start is after end")
        conds.append(_care_dates(start, end))
    access = repo.services.search.access_cond(repo, None, set(plan.types))
    if access is not None:
        conds.append(access)
    plan.includes = [IncludeSpec(reverse=False, iterate=False, source="*", param="*", target=None)]
    plan.include_guard = lambda t: t not in ctypes and repo.may("search-type", t)
    resp = execute(repo.services.search, req, repo, plan, conds)
    if audit:  # the record, then the AuditEvents: the record's last page links on to them
        resp = _then_audit_events(resp, repo, path, plan)
    return resp


def _audit_only(req: FhirRequest) -> bool:
    return [v for k, v in req.params if k == "_type"] == [AUDIT]


def _with_type(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "_type=" + AUDIT


def _audit_events(req: FhirRequest, repo: Any, pid: str | None, path: str, passed: list[tuple[str, str]]
                  ) -> FhirResponse:
    """The AuditEvents about the patient (or about anyone, at type level), from the audit trail, paged there; its
    links come back here (with `_type=AuditEvent`)."""
    from service.audit import trail
    from service.audit.tables import audit_also, audit_log

    A = audit_log
    params = [(k, v) for k, v in req.params if k in ("_count", "_cursor")] + passed
    if pid is not None:
        who = or_(A.c.patient_id == pid, A.c.seq.in_(select(audit_also.c.seq).where(audit_also.c.patient_id == pid)))
    else:
        who = A.c.patient_id.isnot(None)
    resp: FhirResponse = trail.search(repo, FhirRequest("GET", path, params=params, headers=req.headers), path, who)
    body = orjson.loads(resp.body or b"{}")
    for link in body.get("link", []):
        link["url"] = _with_type(link["url"])
    resp.body = orjson.dumps(body)
    return resp


def _then_audit_events(resp: FhirResponse, repo: Any, path: str, plan: Plan) -> FhirResponse:
    """The record's page, its last one linking on to the AuditEvents. Edited as bytes (the entries are served as
    stored: never parsed again): the Bundle's `link` array comes before its entries, and its URLs are
    percent-encoded (no `]`)."""
    body = resp.body or b""
    head, sep, rest = body.partition(b'"link":[')
    links, close, tail = rest.partition(b"]")
    if not sep or not close:
        return resp
    head = re.sub(rb',"total":\d+', b"", head, count=1)  # (the record's total alone would mislead)
    if b'"relation":"next"' not in links:
        keep = [(k, v) for k, v in plan.applied if k != "_type"] + [("_type", AUDIT)]
        link = orjson.dumps({"relation": "next", "url": f"{repo.base}/{path}?" + urlencode(keep, safe=":|,/$*")})
        links = links + b"," + link if links else link
    resp.body = head + sep + links + close + tail
    return resp
