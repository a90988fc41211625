"""`GET [base]/$access-report[?start=][&end=]`: accesses to the record by organisation, for the IG lead.

Counts the audit rows of FHIR interactions recorded in the window (default the last 30 days, at most 366),
grouped by the caller's organisation (reference or ODS code; callers with no organisation are grouped as
such). Aggregated in SQL over the audit log's own columns: no event is loaded.

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
from sqlalchemy import and_, func, or_, select, union_all

from service.audit import codes as c
from service.audit.reports.common import (
    org_parts,
    organisations,
    organisations_by_ods,
    require_ig,
    window,
    window_parts,
)
from service.audit.tables import audit_also as X
from service.audit.tables import audit_log as A
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository
from service.workflows.params import Params

READS = ("read", "vread", "history-instance", "history-type", "history-system")
SEARCHES = ("search-type", "search-system", "search-compartment")
WRITES = ("create", "update", "patch", "delete")
FIGURES = ("events", "reads", "searches", "writes", "other", "denied", "failed", "breakGlass", "patients")
NONE = ("", "")  # the group of events with no organisation agent


def _group(org: str | None) -> tuple[str, str]:
    """(Organization id, ODS code) of an audit row's organisation column."""
    if not org:
        return NONE
    if org.startswith("Organization/"):
        return org.split("/", 1)[1], ""
    if "|" in org:
        system, _, code = org.rpartition("|")
        return ("", code) if system == c.ODS else NONE
    return NONE


def _rows(repo: Repository, start: int, end: int, by_org: bool) -> dict[tuple[str, str], dict[str, int]]:
    """The figures per organisation (or for everyone), aggregated in SQL over the audit log's columns."""
    window_ = and_(A.c.kind == "rest", A.c.recorded >= start, A.c.recorded < end)
    key = [A.c.organisation] if by_org else []
    out: dict[tuple[str, str], dict[str, int]] = {}

    def fig(org: str | None) -> dict[str, int]:
        group = _group(org) if by_org else NONE
        return out.setdefault(group, dict.fromkeys(FIGURES, 0))

    q = select(*key, A.c.interaction, A.c.outcome, func.count()).where(window_).group_by(*key, A.c.interaction,
                                                                                          A.c.outcome)
    for row in repo._conn.execute(q):
        org, (code, outcome, n) = (row[0], tuple(row[1:])) if by_org else (None, tuple(row))
        f = fig(org)
        f["events"] += n
        if outcome == 4:
            f["denied"] += n
        elif outcome >= 8:
            f["failed"] += n
        elif code in READS:
            f["reads"] += n
        elif code in SEARCHES:
            f["searches"] += n
        elif code in WRITES:
            f["writes"] += n
        else:
            f["other"] += n
    btg = or_(A.c.purpose == "BTG", A.c.purpose.like("BTG,%"), A.c.purpose.like("%,BTG"), A.c.purpose.like("%,BTG,%"))
    q = select(*key, func.count()).where(window_, A.c.outcome == 0, btg).group_by(*key)
    for row in repo._conn.execute(q):
        fig(row[0] if by_org else None)["breakGlass"] = row[-1]
    people = union_all(
        select(A.c.organisation.label("org"), A.c.patient_id.label("pid")).where(
            window_, A.c.outcome == 0, A.c.patient_id.is_not(None)),
        select(A.c.organisation.label("org"), X.c.patient_id.label("pid")).select_from(
            X.join(A, A.c.seq == X.c.seq)).where(window_, A.c.outcome == 0)).subquery("people")
    pkey = [people.c.org] if by_org else []
    q = select(*pkey, func.count(func.distinct(people.c.pid))).group_by(*pkey)
    for row in repo._conn.execute(q):
        fig(row[0] if by_org else None)["patients"] = row[-1]
    return out


def _figure_parts(fig: dict[str, int]) -> list[dict[str, Any]]:
    return [{"name": k, "valueInteger": fig[k]} for k in FIGURES]


def access_report(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    require_ig(repo, "access-report")
    start, end = window(Params(req))
    groups = _rows(repo, start, end, by_org=True)
    total = _rows(repo, start, end, by_org=False).get(NONE, dict.fromkeys(FIGURES, 0))
    refs = [f"Organization/{org_id}" for org_id, _ in groups if org_id]
    known = organisations(repo, refs)  # (name, ODS code) from each Organization record
    by_ods = organisations_by_ods(repo, [ods for org_id, ods in groups if ods and not org_id])
    params: list[dict[str, Any]] = window_parts(start, end)
    params.append({"name": "total", "part": _figure_parts(total)})
    for (org_id, ods), fig in sorted(groups.items(), key=lambda kv: (-kv[1]["events"], kv[0])):
        ref = f"Organization/{org_id}" if org_id else None
        name, recorded_ods = known.get(ref or "", (None, None))
        ods = ods or recorded_ods or ""
        if ref is None and ods in by_ods:
            ref, name = by_ods[ods]
        who = org_parts(ref, ods or None, name) or [{"name": "name", "valueString": "(no organisation)"}]
        params.append({"name": "organisation", "part": who + _figure_parts(fig)})
    return FhirResponse(200, orjson.dumps({"resourceType": "Parameters", "parameter": params}))


OPERATIONS = (Operation(name="access-report", level="system", types=(), methods=("GET",), handler=access_report),)
