"""`GET [base]/$access-report[?start=][&end=]`: accesses to the record by organisation, for the IG lead.

Counts the AuditEvents of type `rest` (every FHIR interaction) recorded in the window (default the last
30 days, at most 366), grouped by the organisation agent of each event (reference and ODS code; events
of callers with no organisation are grouped as such). Aggregated in SQL over the search index rows
(`sp_date` date, `sp_token` type/subtype/outcome/purpose, `sp_reference` agent/entity): no event is loaded.

Parameters: `start`, `end` (the window), `total` (part: the same figures over every organisation), then
one `organisation` per organisation, most events first, with parts:
  reference, odsCode, name   who (name from the Organization record)
  events                     every interaction recorded (any outcome)
  reads, searches, writes    successful ones (outcome 0): read/vread/history; search; create/update/
                             patch/delete. `other`: successful transactions, batches, operations, capabilities
  denied, failed             outcome 4 (refused: 4xx) and 8 (server failure)
  breakGlass                 successful accesses with purpose of use BTG (emergency access)
  patients                   distinct patients whose records those successful events concerned
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql import Select

from service.audit import codes as c
from service.audit.reports.common import (
    names,
    org_parts,
    organisations_by_ods,
    require_ig,
    window,
    window_parts,
)
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository
from service.search.tables import sp_date, sp_reference, sp_token
from service.workflows.params import Params

A = "AuditEvent"
READS = ("read", "vread", "history-instance", "history-type", "history-system")
SEARCHES = ("search-type", "search-system")
WRITES = ("create", "update", "patch", "delete")
FIGURES = ("events", "reads", "searches", "writes", "other", "denied", "failed", "breakGlass", "patients")
NONE = ("", "")  # the group of events with no organisation agent


def _events(start: int, end: int) -> Any:
    """The rest events recorded in [start, end), as a subquery of ids."""
    t = sp_token.alias("ty")
    return (select(sp_date.c.res_id.label("res_id"))
            .join(t, and_(t.c.res_type == A, t.c.res_id == sp_date.c.res_id, t.c.param == "type",
                          t.c.system == c.EVENT_TYPE, t.c.code == "rest"))
            .where(sp_date.c.res_type == A, sp_date.c.param == "date", sp_date.c.low >= start, sp_date.c.low < end)
            .subquery("ev"))


def _orgs() -> Any:
    """The organisation agent rows (a reference to an Organization, or an ODS identifier)."""
    r = sp_reference
    return (select(r.c.res_id, func.coalesce(r.c.target_id, "").label("org_id"),
                   case((r.c.ident_system == c.ODS, r.c.ident_value), else_="").label("ods"))
            .where(r.c.res_type == A, r.c.param == "agent",
                   or_(r.c.target_type == "Organization", and_(r.c.target_type.is_(None), r.c.ident_system == c.ODS)))
            .subquery("org"))


def _token(alias: str, param: str, **match: str) -> tuple[Any, Any]:
    t = sp_token.alias(alias)
    conds = [t.c.res_type == A, t.c.param == param] + [getattr(t.c, k) == v for k, v in match.items()]
    return t, and_(*conds)


def _rows(repo: Repository, start: int, end: int, by_org: bool) -> dict[tuple[str, str], dict[str, int]]:
    ev, org = _events(start, end), _orgs()
    out: dict[tuple[str, str], dict[str, int]] = {}
    keys = [func.coalesce(org.c.org_id, "").label("org_id"), func.coalesce(org.c.ods, "").label("ods")] \
        if by_org else []

    def key(row: Any) -> tuple[tuple[str, str], tuple[Any, ...]]:
        return ((row[0], row[1]), tuple(row[2:])) if by_org else (NONE, tuple(row))

    def base(*cols: Any) -> Select[Any]:
        q = select(*keys, *cols).select_from(ev)
        return q.outerjoin(org, org.c.res_id == ev.c.res_id) if by_org else q

    # interactions by restful-interaction code and outcome
    st, st_on = _token("st", "subtype", system=c.RESTFUL)
    oc, oc_on = _token("oc", "outcome")
    q = base(st.c.code.label("code"), oc.c.code.label("outcome"), func.count(func.distinct(ev.c.res_id)))
    q = (q.outerjoin(st, and_(st_on, st.c.res_id == ev.c.res_id)).outerjoin(oc, and_(oc_on, oc.c.res_id == ev.c.res_id))
         .group_by(*keys, st.c.code, oc.c.code))
    for row in repo._conn.execute(q):
        group, (code, outcome, n) = key(row)
        fig = out.setdefault(group, dict.fromkeys(FIGURES, 0))
        fig["events"] += n
        if outcome == "4":
            fig["denied"] += n
        elif outcome in ("8", "12"):
            fig["failed"] += n
        elif code in READS:
            fig["reads"] += n
        elif code in SEARCHES:
            fig["searches"] += n
        elif code in WRITES:
            fig["writes"] += n
        else:
            fig["other"] += n
    # successful break-glass accesses
    ok, ok_on = _token("ok", "outcome", code="0")
    pu, pu_on = _token("pu", "purpose", system=c.ACT_REASON, code="BTG")
    q = base(func.count(func.distinct(ev.c.res_id)))
    q = (q.join(ok, and_(ok_on, ok.c.res_id == ev.c.res_id)).join(pu, and_(pu_on, pu.c.res_id == ev.c.res_id))
         .group_by(*keys))
    for row in repo._conn.execute(q):
        group, (n,) = key(row)
        out.setdefault(group, dict.fromkeys(FIGURES, 0))["breakGlass"] = n
    # distinct patients concerned by successful events
    ok2, ok2_on = _token("ok2", "outcome", code="0")
    pr = sp_reference.alias("pr")
    q = base(func.count(func.distinct(pr.c.target_id)))
    q = (q.join(ok2, and_(ok2_on, ok2.c.res_id == ev.c.res_id))
         .join(pr, and_(pr.c.res_type == A, pr.c.res_id == ev.c.res_id, pr.c.param == "entity",
                        pr.c.target_type == "Patient"))
         .group_by(*keys))
    for row in repo._conn.execute(q):
        group, (n,) = key(row)
        out.setdefault(group, dict.fromkeys(FIGURES, 0))["patients"] = n
    return out


def _figure_parts(fig: dict[str, int]) -> list[dict[str, Any]]:
    return [{"name": k, "valueInteger": fig[k]} for k in FIGURES]


def access_report(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    require_ig(repo, "access-report")
    start, end = window(Params(req))
    groups = _rows(repo, start, end, by_org=True)
    total = _rows(repo, start, end, by_org=False).get(NONE, dict.fromkeys(FIGURES, 0))
    refs = [f"Organization/{org_id}" for org_id, _ in groups if org_id]
    named = names(repo, refs)
    by_ods = organisations_by_ods(repo, [ods for org_id, ods in groups if ods and not org_id])
    params: list[dict[str, Any]] = window_parts(start, end)
    params.append({"name": "total", "part": _figure_parts(total)})
    for (org_id, ods), fig in sorted(groups.items(), key=lambda kv: (-kv[1]["events"], kv[0])):
        ref = f"Organization/{org_id}" if org_id else None
        name = named.get(ref or "")
        if ref is None and ods in by_ods:
            ref, name = by_ods[ods]
        who = org_parts(ref, ods or None, name) or [{"name": "name", "valueString": "(no organisation)"}]
        params.append({"name": "organisation", "part": who + _figure_parts(fig)})
    return FhirResponse(200, orjson.dumps({"resourceType": "Parameters", "parameter": params}))


OPERATIONS = (Operation(name="access-report", level="system", types=(), methods=("GET",), handler=access_report),)
