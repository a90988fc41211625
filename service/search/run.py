"""Running a search: parameters -> plan -> count -> keyset page -> includes -> searchset Bundle."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import and_, cast, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from service.db import select_rows
from service.fhir.decimals import redumps
from service.fhir.outcome import Issue, OperationOutcomeError, bad_request, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.fhir.types import RESOURCE_TYPES
from service.ownership import parse_owners
from service.ownership import patient_data_types as compartment_types
from service.search import paging
from service.search.derived import param_is
from service.search.includes import IncludeSpec, fetch_includes, parse_include
from service.search.params import lookup, params_for
from service.search.query import (
    MAX_US,
    MIN_US,
    Criterion,
    UnknownParameter,
    combine,
    make_criterion,
    split_value,
)
from service.search.render import apply_summary, check_elements, check_summary
from service.search.tables import INDEX_TABLES, CString, sp_compartment
from service.search.values import date_range
from service.storage.tables import resource as R

log = logging.getLogger("sharedcare.search")

DEFAULT_COUNT = 20
MAX_COUNT = 1000
CONTROL = {"_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude", "_cursor",
           "_contained", "_containedType", "_type"}
# Result parameters common clients send that change nothing here: accepted without a note. (`_format` and
# `_pretty` are taken off at the HTTP edge; fhirpy's `count()` sends `_totalMethod=count`, Aidbox's name
# for how to count, and we always count accurately unless `_total` says otherwise.)
ACCEPTED_QUIETLY = {"_totalMethod", "_format", "_pretty"}
SYSTEM_PARAMS = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"}


@dataclass
class Plan:
    rtype: str | None
    path: str
    conds: list[ColumnElement[bool]] = field(default_factory=list)
    applied: list[tuple[str, str]] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    count: int = DEFAULT_COUNT
    total: str = "accurate"
    summary: str | None = None
    elements: list[str] | None = None
    includes: list[IncludeSpec] = field(default_factory=list)
    types: list[str] | None = None
    cursor: str | None = None
    notes: list[Issue] = field(default_factory=list)
    include_guard: Any = None  # which included types to add in $everything (None: any)
    source: Any = None  # FROM clause when not `resource` alone (a compartment join)


def lenient(req: FhirRequest) -> bool:
    """Search never silently widens: an unknown or unsupported parameter is a 400 naming it, unless the
    client opted into `Prefer: handling=lenient` (then it is ignored, with a warning in the Bundle)."""
    return req.prefer.get("handling", "strict").lower() == "lenient"


def check_body(req: FhirRequest) -> None:
    """`POST [type]/_search` takes its parameters as a form body (application/x-www-form-urlencoded: the HTTP
    edge moves them into the parameters and drops the body); any other body is refused, never ignored."""
    if req.method == "POST" and req.body:
        raise OperationOutcomeError(415, "not-supported", f"POST _search takes its parameters as "
                                    f"application/x-www-form-urlencoded, not {req.content_type or 'an untyped body'}"
                                    "; the body was not read")


def _unknown(req: FhirRequest, plan: Plan, key: str, why: str) -> None:
    if not lenient(req):
        raise bad_request(f"Unknown or unsupported search parameter {key!r}: {why}", code="not-supported",
                          expression=(key,))
    plan.notes.append(Issue("warning", "not-supported", f"Ignored search parameter {key!r}: {why}"))


def _control(req: FhirRequest, plan: Plan, key: str, value: str) -> None:
    base, _, mod = key.partition(":")
    if base == "_count":
        if not (value.isascii() and value.isdigit()):
            raise bad_request(f"_count must be a whole number, not {value[:100]!r}")
        digits = value.lstrip("0") or "0"
        n = MAX_COUNT + 1 if len(digits) > 6 else int(digits)
        if n > MAX_COUNT:
            plan.notes.append(Issue("warning", "too-costly", f"_count={n} was reduced to the maximum {MAX_COUNT}"))
            n = MAX_COUNT
            value = str(MAX_COUNT)
        plan.count = n
    elif base == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise bad_request(f"_total must be none, estimate or accurate, not {value!r}")
        plan.total = value
    elif base == "_summary":
        plan.summary = check_summary(value)
    elif base == "_elements":
        plan.elements = check_elements(value)
    elif base == "_sort":
        sort = []
        for part in value.split(","):
            desc = part.startswith("-")
            name = part[1:] if desc else part
            if not name:
                raise bad_request(f"_sort has an empty key in {value!r}")
            if name not in ("_id", "_lastUpdated") and (plan.rtype is None or lookup(plan.rtype, name) is None):
                _unknown(req, plan, "_sort", f"cannot sort {plan.rtype or 'a system search'} by {name!r}")
                continue
            sort.append((name, desc))
        if not sort:
            return
        plan.sort = sort
        value = ",".join(("-" if d else "") + n for n, d in sort)
    elif base in ("_include", "_revinclude"):
        if mod not in ("", "iterate", "recurse"):
            raise bad_request(f"{base} does not support the modifier :{mod}")
        try:
            plan.includes.append(parse_include(base == "_revinclude", mod != "", value, plan.rtype))
        except UnknownParameter as exc:
            _unknown(req, plan, key, exc.why)
            return
    elif base == "_type":
        types = [t for t in value.split(",") if t]
        bad = [t for t in types if t not in RESOURCE_TYPES]
        if bad:
            raise bad_request(f"_type: {', '.join(bad)} is not a resource type")
        plan.types = sorted(set(plan.types or types) & set(types)) if plan.types is not None else types
    elif base == "_contained":
        if value not in ("false", "true", "both"):
            raise bad_request(f"_contained must be true, false or both, not {value[:100]!r}")
        if value != "false":
            _unknown(req, plan, key, "searching contained resources is not supported")
            return
    elif base == "_containedType" and value not in ("container", "contained"):
        raise bad_request(f"_containedType must be container or contained, not {value[:100]!r}")
    plan.applied.append((key, value))


MAX_PARAMETERS = 40  # criteria and result parameters in one search
MAX_VALUES = 100  # comma-separated values of one parameter (an OR)
MAX_INCLUDES = 10  # _include and _revinclude parameters
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_limits(params: list[tuple[str, str]]) -> None:
    """The documented limits of a search, before any query: 400 naming the one broken (README: Search)."""
    if len(params) > MAX_PARAMETERS:
        raise bad_request(f"A search may have at most {MAX_PARAMETERS} parameters; this one has {len(params)}",
                          code="too-costly")
    includes = 0
    for key, value in params:
        if _CONTROL_CHARS.search(key) or _CONTROL_CHARS.search(value):
            raise bad_request(f"Search parameter {key[:60]!r} contains a control character (such as NUL), which no "
                              "FHIR value may hold", code="value")
        if key.startswith(("_include", "_revinclude")):
            includes += 1
        elif value.count(",") - value.count("\\,") >= MAX_VALUES:
            raise bad_request(f"Search parameter {key[:60]!r} has more than {MAX_VALUES} values (OR)", code="too-costly")
    if includes > MAX_INCLUDES:
        raise bad_request(f"A search may have at most {MAX_INCLUDES} _include and _revinclude parameters",
                          code="too-costly")


def build_plan(engine: Any, req: FhirRequest, repo: Any, rtype: str | None, path: str,
               *, extra: dict[str, str] | None = None, driven: bool = False) -> Plan:
    """`driven`: the query is already driven by something more selective (a patient's compartment), so
    every criterion becomes a probe."""
    plan = Plan(rtype=rtype, path=path)
    cx = engine.context(repo)
    criteria: list[Criterion] = []
    check_limits(req.params)
    for key, value in req.params:
        if key == "_cursor":
            plan.cursor = value
            continue
        if extra is not None and key in extra:
            continue
        base = key.split(":", 1)[0]
        if key in ACCEPTED_QUIETLY:
            continue
        if base in CONTROL:
            if base == "_type" and rtype is not None:
                _unknown(req, plan, key, "_type applies to system-level searches")
                continue
            _control(req, plan, key, value)
            continue
        try:
            criteria.append(make_criterion(rtype, key, value, cx))
        except UnknownParameter as exc:
            _unknown(req, plan, key, exc.why)
            continue
        plan.applied.append((key, value))
    plan.conds = combine(rtype, criteria, driven=driven)
    return plan


# -- sort keys and keyset --------------------------------------------------------------------------

# A resource's sort key on a parameter is its lowest value ascending and its highest descending; a resource
# with no value sorts last either way. Tokens sort by code then system (a text-only concept has no code),
# references by `Type/id` (or the absolute URL), strings by their case- and accent-free form; text keys
# compare in code-point order on both databases ("C" collation).
_LAST_TEXT = "\U0010ffff"


def _sort_expr(rtype: str | None, name: str, desc: bool) -> Any:
    if name == "_id":
        return R.c.res_id
    if name == "_lastUpdated":
        return R.c.last_updated
    assert rtype is not None
    param = lookup(rtype, name)
    assert param is not None
    t = INDEX_TABLES[param.type]
    agg = func.max if desc else func.min
    where = [t.c.res_type == rtype, t.c.res_id == R.c.res_id, param_is(t.c.param, rtype, name)]
    if param.type == "date":
        col, null = (t.c.high if desc else t.c.low), (MIN_US if desc else MAX_US)
    elif param.type in ("number", "quantity"):
        col, null = t.c.value, (-1e300 if desc else 1e300)
    else:
        if param.type == "token":
            col = t.c.code + "\x01" + t.c.system
            where.append(t.c.code != "")
        elif param.type == "reference":
            col = func.coalesce(t.c.target_type + "/" + t.c.target_id, t.c.url)
        else:
            col = t.c.value
        col, null = cast(col, CString), ("" if desc else _LAST_TEXT)
    sub = select(agg(col)).where(*where)
    return func.coalesce(sub.scalar_subquery(), null)


def _keys(plan: Plan) -> list[tuple[Any, bool]]:
    keys = [(_sort_expr(plan.rtype, n, d), d) for n, d in plan.sort]
    names = [n for n, _ in plan.sort]
    if plan.rtype is None:
        keys += [(R.c.res_type, False), (R.c.res_id, False)]
    elif "_id" not in names:
        keys.append((R.c.res_id, False))
    return keys


def _after(cols: list[Any], descs: list[bool], values: list[Any], backwards: bool) -> ColumnElement[bool]:
    ors = []
    for i in range(len(cols)):
        desc = descs[i] != backwards
        cmp = cols[i] < values[i] if desc else cols[i] > values[i]
        ors.append(and_(*[cols[j] == values[j] for j in range(i)], cmp))
    return or_(*ors)


@dataclass
class Page:
    rows: list[Stored]
    first_keys: list[Any] | None
    last_keys: list[Any] | None
    has_next: bool
    has_prev: bool


def page_statement(plan: Plan, conds: list[ColumnElement[bool]], direction: str | None,
                   cursor_keys: list[Any] | None) -> tuple[Any, int]:
    """The keyset page query (LIMIT count + 1) and the number of sort keys."""
    keys = _keys(plan)
    labelled = [expr.label(f"k{i}") for i, (expr, _) in enumerate(keys)]
    descs = [d for _, d in keys]
    backwards = direction == "prev"
    rows = select(R.c.res_type, R.c.res_id, R.c.version, R.c.last_updated, R.c.deleted, R.c.content, R.c.owners,
                  *labelled).select_from(_source(plan)).where(*conds)
    if all(expr is R.c.res_id or expr is R.c.res_type for expr, _ in keys):  # the default order: no subquery
        stmt, cols = rows, [expr for expr, _ in keys]
    else:  # (sort keys computed once per row, in the subquery)
        inner = rows.subquery()
        stmt, cols = select(inner), [inner.c[f"k{i}"] for i in range(len(keys))]
    if cursor_keys is not None:
        if len(cursor_keys) != len(cols):
            raise bad_request("The paging link does not fit this search; start the search again")
        stmt = stmt.where(_after(cols, descs, cursor_keys, backwards))
    order = [(c.desc() if (d != backwards) else c.asc()) for c, d in zip(cols, descs)]
    return stmt.order_by(*order).limit(plan.count + 1), len(keys)


_KEYS_AT = 7  # a page row: res_type, res_id, version, last_updated, deleted, content, owners, then the sort keys


def _page_row(r: Any) -> Stored:
    content = r[5]
    return Stored(r[0], r[1], r[2], r[3], bool(r[4]), content.encode() if isinstance(content, str) else content,
                  "", 0, parse_owners(r[6]))


def fetch_page(conn: Any, plan: Plan, conds: list[ColumnElement[bool]], direction: str | None,
               cursor_keys: list[Any] | None) -> Page:
    stmt, nkeys = page_statement(plan, conds, direction, cursor_keys)
    backwards = direction == "prev"
    rows: list[Any] | None = select_rows(conn, stmt)  # (PostgreSQL: no execution context or result object)
    if rows is None:
        rows = list(conn.execute(stmt))
    more = len(rows) > plan.count
    rows = rows[:plan.count]
    if backwards:
        rows.reverse()
    stored = [_page_row(r) for r in rows]
    kv = [list(r[_KEYS_AT:_KEYS_AT + nkeys]) for r in rows]  # (the sort keys follow the row's own columns)
    if backwards:
        has_prev, has_next = more, True
    else:
        has_next, has_prev = more, cursor_keys is not None
    return Page(stored, kv[0] if kv else None, kv[-1] if kv else None, has_next, has_prev)


def plan_statements(engine: Any, req: FhirRequest, repo: Any, rtype: str) -> tuple[Any, Any]:
    """(count query, first-page query) for a type search: for EXPLAIN checks and benchmarks."""
    plan = build_plan(engine, req, repo, rtype, rtype)
    conds = _base_conds(plan)
    access = engine.access_cond(repo, rtype)
    if access is not None:
        conds.append(access)
    return select(func.count()).select_from(_source(plan)).where(*conds), page_statement(plan, conds, None, None)[0]


# -- running ---------------------------------------------------------------------------------------

def _who(repo: Any) -> str:
    p = repo.ctx.principal
    return f"{p.kind}:{p.subject}" if p is not None else ""


def _link(repo: Any, plan: Plan, cursor: str | None) -> str:
    params = list(plan.applied) + ([("_cursor", cursor)] if cursor else [])
    q = urlencode(params, safe=":|,/$*")
    return f"{repo.base}/{plan.path}" + (f"?{q}" if q else "")


def execute(engine: Any, req: FhirRequest, repo: Any, plan: Plan, conds: list[ColumnElement[bool]]
            ) -> FhirResponse:
    secret = engine.secret
    direction, cursor_keys = None, None
    if plan.cursor is not None:
        direction, cursor_keys = paging.verify(secret, plan.cursor, plan.path, plan.applied, _who(repo))
    conn = repo._conn
    total = None
    wants_total = plan.total != "none" or plan.summary == "count" or plan.count == 0
    paged = plan.summary != "count" and plan.count > 0
    page = fetch_page(conn, plan, conds, direction, cursor_keys) if paged else None
    if wants_total:
        if page is not None and plan.cursor is None and not page.has_next:
            total = len(page.rows)  # the first page holds every match: no second query to count them
        else:
            total = conn.execute(select(func.count()).select_from(_source(plan)).where(*conds)).scalar_one()
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    links = [{"relation": "self", "url": _link(repo, plan, plan.cursor)}]
    entries: list[dict[str, Any]] = []
    returned: list[Stored] = []
    if page is not None:
        links.append({"relation": "first", "url": _link(repo, plan, None)})
        if page.has_prev and page.first_keys is not None:
            links.append({"relation": "previous", "url": _link(repo, plan, paging.sign(
                secret, "prev", page.first_keys, plan.path, plan.applied, _who(repo)))})
        if page.has_next and page.last_keys is not None:
            links.append({"relation": "next", "url": _link(repo, plan, paging.sign(
                secret, "next", page.last_keys, plan.path, plan.applied, _who(repo)))})
        matches = returned = repo.visible(page.rows, filtered=True)
        if len(matches) != len(page.rows):
            log.warning("search filter let through %d resources that can_see hid", len(page.rows) - len(matches))
            bundle.pop("total", None)
        seen = {(s.res_type, s.res_id) for s in page.rows}
        for s in matches:
            entries.append(_entry(repo, s, "match", plan))
        if plan.includes:
            for s in fetch_includes(engine, repo, plan.includes, matches, seen, plan.include_guard):
                entries.append(_entry(repo, s, "include", plan))
    bundle["link"] = links
    issues = [i.to_json() for i in plan.notes] + _suppressed(repo, req, returned)
    if issues:
        entries.append({"resource": {"resourceType": "OperationOutcome", "issue": issues},
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, orjson.dumps(bundle))


def _suppressed(repo: Any, req: FhirRequest, returned: list[Stored]) -> list[dict[str, Any]]:
    """`suppressed` issues from the access policy: content of people in the results, or named in the query,
    that the caller may not see because of their consents."""
    notes = repo._access.search_notes
    if not notes(None):
        return []
    named = set(re.findall(r"Patient/([A-Za-z0-9.-]{1,64})", req.path + "?" + "&".join(v for _, v in req.params)))
    for s in returned:
        named |= set(s.owners)
    return [{"severity": "information", "code": "suppressed", "diagnostics": text} for text in notes(named)]


def _entry(repo: Any, s: Stored, mode: str, plan: Plan) -> dict[str, Any]:
    assert s.content is not None
    content: Any = orjson.Fragment(s.content)
    if plan.summary in ("true", "text", "data") or plan.elements is not None:
        content = orjson.Fragment(redumps(apply_summary(s.json(), plan.summary, plan.elements), s.content))
    return {"fullUrl": f"{repo.base}/{s.res_type}/{s.res_id}", "resource": content, "search": {"mode": mode}}


def _source(plan: Plan) -> Any:
    return R if plan.source is None else plan.source


def _in_compartment(plan: Plan, patient_id: str) -> list[ColumnElement[bool]]:
    """Join one patient's compartment rows (one per resource and patient, so no duplicates): the patient
    index (patient_id, res_type, res_id) then both drives the query and gives the (res_type, res_id)
    order of the pages, so a page reads its own rows only. The types are restricted on the compartment
    side too, so that each resource is one primary-key probe."""
    comp = sp_compartment.alias("own_compartment")  # never correlated with a filter's own sp_compartment
    c = comp.c
    plan.source = R.join(comp, and_(c.res_type == R.c.res_type, c.res_id == R.c.res_id))
    conds = [c.patient_id == patient_id]
    if plan.rtype is not None:
        conds.append(c.res_type == plan.rtype)
    elif plan.types is not None:
        conds.append(c.res_type.in_(plan.types))
    return conds


def _base_conds(plan: Plan) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [R.c.deleted.is_(False)]
    if plan.rtype is not None:
        conds.insert(0, R.c.res_type == plan.rtype)
    elif plan.types is not None and plan.source is None:  # (a compartment join restricts the types itself)
        conds.insert(0, R.c.res_type.in_(plan.types))
    return conds + plan.conds


def run_search(engine: Any, req: FhirRequest, repo: Any, rtype: str | None) -> FhirResponse:
    repo.require("search-type" if rtype else "search-system", rtype)
    check_body(req)
    path = rtype or ""
    plan = build_plan(engine, req, repo, rtype, path)
    conds = _base_conds(plan)
    if rtype is None:  # a system search covers the record's types the caller may search (not the audit trail)
        plan.types = [t for t in (plan.types or sorted(RESOURCE_TYPES)) if t != "AuditEvent"
                      and repo.may("search-type", t)]
        conds = _base_conds(plan)
    access = engine.access_cond(repo, rtype, set(plan.types) if plan.types else None)
    if access is not None:
        conds.append(access)
    return execute(engine, req, repo, plan, conds)


def run_compartment(engine: Any, req: FhirRequest, repo: Any, ctype: str, cid: str, rtype: str
                    ) -> FhirResponse:
    if ctype != "Patient":
        raise OperationOutcomeError(400, "not-supported", f"Only the Patient compartment is supported, not {ctype}")
    types = compartment_types()
    if rtype != "*" and rtype not in types:
        raise bad_request(f"{rtype} is not in the Patient compartment")
    target = None if rtype == "*" else rtype
    repo.require("search-type" if target else "search-system", target)
    check_body(req)
    plan = build_plan(engine, req, repo, target, f"{ctype}/{cid}/{rtype}", driven=True)
    if target is None:
        plan.types = sorted(t for t in set(plan.types or types) & types if t != "AuditEvent"
                            and repo.may("search-type", t))
    joined = _in_compartment(plan, cid)
    conds = _base_conds(plan) + joined
    access = engine.access_cond(repo, target, set(plan.types) if plan.types else None)
    if access is not None:
        conds.append(access)
    return execute(engine, req, repo, plan, conds)


def run_everything(engine: Any, req: FhirRequest, repo: Any, pid: str) -> FhirResponse:
    repo.require("search-type", "Patient")
    # the same decision as a read: a hidden patient is a missing one; one the person's choices withhold is 403
    patient, _ = repo._visible_current("read", "Patient", pid)
    if patient is None or patient.deleted:
        raise not_found(f"Patient/{pid} is not known")
    plan = Plan(rtype=None, path=f"Patient/{pid}/$everything")
    since = None
    for key, value in req.params:
        if key == "_cursor":
            plan.cursor = value
        elif key == "_count" or key == "_type":
            _control(req, plan, key, value)
        elif key == "_since":
            rng = date_range(value)
            if rng is None or "T" not in value:
                raise bad_request(f"_since must be an instant (YYYY-MM-DDThh:mm:ss[.fff]Z), not {value!r}")
            since = rng[0]
            plan.applied.append((key, value))
        else:
            _unknown(req, plan, key, "$everything takes _since, _type and _count")
    present = {r[0] for r in repo._conn.execute(
        select(sp_compartment.c.res_type).where(sp_compartment.c.patient_id == pid).distinct())}
    types = sorted((set(plan.types) if plan.types else compartment_types()) & (present | {"Patient"}))
    # $everything leaves out what the caller may not search, and the audit trail (it is about accesses)
    types = [t for t in types if t != "AuditEvent" and repo.may("search-type", t)]
    plan.types = types or ["Patient"]
    joined = _in_compartment(plan, pid)
    conds = _base_conds(plan) + joined
    if since is not None:
        conds.append(R.c.last_updated >= since)
    access = engine.access_cond(repo, None, set(plan.types))
    if access is not None:
        conds.append(access)
    ctypes = compartment_types()
    plan.includes = [IncludeSpec(reverse=False, iterate=False, source="*", param="*", target=None)]
    plan.include_guard = lambda t: t not in ctypes and repo.may("search-type", t)
    return execute(engine, req, repo, plan, conds)


def split_types(value: str) -> list[str]:
    return [t for t in split_value(value) if t]


__all__ = ["params_for", "run_compartment", "run_everything", "run_search"]
