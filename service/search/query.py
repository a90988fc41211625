"""Search criteria -> SQL. Each parameter occurrence becomes a condition on the `resource` row.

One small builder per parameter-type family (token, string, reference, date, number, quantity, uri),
each producing a WHERE condition on its index table; `criterion()` wraps it as `res_id IN (SELECT
res_id FROM sp_x WHERE ...)` (an index range scan feeding a primary-key lookup on both databases),
or `NOT IN` for `:not` / `:missing=true`. Chains (`subject:Patient.name=x`) and `_has` nest the same
builders. A comma in a value is OR, a repeated parameter is AND (the caller ANDs the conditions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, false, not_, or_, select, true, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select

from service.fhir.outcome import bad_request
from service.fhir.types import RESOURCE_TYPES
from service.search import valueset_modifiers
from service.search.derived import param_is
from service.search.extract import parse_reference
from service.search.params import COMMON_INDEXED, SearchParam, lookup, modifiers
from service.search.tables import (
    sp_compartment,
    sp_date,
    sp_number,
    sp_quantity,
    sp_reference,
    sp_string,
    sp_token,
    sp_uri,
)
from service.search.values import MAX_US, MIN_US, cut, date_range, normalize, number_range, prefix_upper
from service.storage.tables import resource as R

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
TABLE_FOR = {"token": sp_token, "string": sp_string, "reference": sp_reference, "date": sp_date,
             "number": sp_number, "quantity": sp_quantity, "uri": sp_uri}
MAX_CHAIN = 3
NOT_SUPPORTED = {"_filter": "the _filter syntax is not supported", "_query": "named queries are not supported"}


class UnknownParameter(Exception):
    """A parameter this type does not have (ignored in lenient mode, 400 in strict mode)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(why)
        self.name = name
        self.why = why


@dataclass
class Context:
    base: str
    filters: Any = None  # callable rtype -> SQL condition on R (access filter), or None
    now_us: int = 0


def split_value(value: str, sep: str = ",") -> list[str]:
    """Split on an unescaped separator; `\\,` `\\|` `\\$` `\\\\` are escapes (kept escaped for the next split)."""
    parts, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(value: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", value)


def _split_prefix(value: str, name: str) -> tuple[str, str]:
    if value[:2] in PREFIXES:
        return value[:2], value[2:]
    if value[:1].isalpha():
        raise bad_request(f"Search parameter {name!r}: unknown prefix {value[:2]!r} in {value!r} "
                          f"(allowed: {', '.join(PREFIXES)})")
    return "eq", value


def _range_cond(prefix: str, lo: Any, hi: Any, sl: Any, sh: Any, approx: Any = None) -> ColumnElement[bool]:
    """Range semantics of FHIR search prefixes: target [lo, hi] against search [sl, sh] (inclusive)."""
    contained = and_(lo >= sl, hi <= sh)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return hi > sh
    if prefix == "lt":
        return lo < sl
    if prefix == "ge":
        return or_(hi > sh, contained)
    if prefix == "le":
        return or_(lo < sl, contained)
    if prefix == "sa":
        return lo > sh
    if prefix == "eb":
        return hi < sl
    assert prefix == "ap"
    asl, ash = approx
    return and_(lo <= ash, hi >= asl)


# -- per type value conditions (on the index table) ------------------------------------------------

def _token_value(t: Any, name: str, mod: str | None, raw: str) -> ColumnElement[bool]:
    if mod == "text":
        v = normalize(unescape(raw))
        return and_(t.c.text >= v, t.c.text < prefix_upper(v))
    if mod == "of-type":
        parts = [unescape(p) for p in split_value(raw, "|")]
        if len(parts) != 3 or not all(parts):
            raise bad_request(f"Search parameter {name!r}:of-type needs system|code|value, got {raw!r}")
        return and_(t.c.system == cut(parts[0]), t.c.code == cut(f"{parts[1]}|{parts[2]}"))
    parts = split_value(raw, "|")
    if len(parts) == 1:
        return t.c.code == cut(unescape(parts[0]))
    if len(parts) != 2:
        raise bad_request(f"Search parameter {name!r}: {raw!r} is not [system|]code")
    system, code = unescape(parts[0]), unescape(parts[1])
    if code == "":
        return t.c.system == cut(system)
    return and_(t.c.system == cut(system), t.c.code == cut(code))


def _string_value(t: Any, name: str, mod: str | None, raw: str) -> ColumnElement[bool]:
    v = unescape(raw)
    if mod == "exact":
        return t.c.exact == cut(v)
    n = normalize(v)
    if mod == "contains":
        esc = n.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return t.c.value.like(f"%{esc}%", escape="\\")
    return and_(t.c.value >= n, t.c.value < prefix_upper(n))


def _reference_value(t: Any, param: SearchParam, mod: str | None, raw: str, base: str) -> ColumnElement[bool]:
    v = unescape(raw)
    if mod == "identifier":
        parts = [unescape(p) for p in split_value(raw, "|")]
        if len(parts) == 1:
            return t.c.ident_value == cut(parts[0])
        if len(parts) != 2:
            raise bad_request(f"Search parameter {param.code!r}:identifier needs [system|]value, got {raw!r}")
        conds = [t.c.ident_system == cut(parts[0])]
        if parts[1]:
            conds.append(t.c.ident_value == cut(parts[1]))
        return and_(*conds)
    ttype, tid, url = parse_reference(v, base)
    if ttype is not None:
        if mod and mod != ttype:
            return false()
        return and_(t.c.target_type == ttype, t.c.target_id == tid)
    if url is not None and ("/" in v or ":" in v):
        m = re.match(r"^(.*)/_history/[^/]+$", url)
        return t.c.url == (m.group(1) if m else url)
    # a bare id: restricted to the type given as modifier (or the only target type)
    tid = v[:64]
    if mod:
        return and_(t.c.target_type == mod, t.c.target_id == tid)
    if len(param.targets) == 1:
        return and_(t.c.target_type == param.targets[0], t.c.target_id == tid)
    return t.c.target_id == tid


def _date_value(lo: Any, hi: Any, name: str, raw: str, now_us: int) -> ColumnElement[bool]:
    prefix, v = _split_prefix(raw, name)
    rng = date_range(v)
    if rng is None:
        raise bad_request(f"Search parameter {name!r}: {v!r} is not a valid date or dateTime "
                          "(YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][.fff][Z|+hh:mm])")
    sl, sh = rng
    approx = None
    if prefix == "ap":
        gap = abs(now_us - sl) // 10
        approx = (sl - gap, sh + gap)
    return _range_cond(prefix, lo, hi, sl, sh, approx)


def _number_cond(col: Any, name: str, prefix: str, v: str) -> ColumnElement[bool]:
    try:
        value, low, high = number_range(v)
    except ValueError:
        raise bad_request(f"Search parameter {name!r}: {v!r} is not a number") from None
    fv, fl, fh = float(value), float(low), float(high)
    if prefix == "eq":
        return and_(col >= fl, col < fh)
    if prefix == "ne":
        return or_(col < fl, col >= fh)
    if prefix in ("gt", "sa"):
        return col > fv
    if prefix in ("lt", "eb"):
        return col < fv
    if prefix == "ge":
        return col >= fv
    if prefix == "le":
        return col <= fv
    gap = abs(value) * Decimal("0.1")
    return and_(col >= float(value - gap), col <= float(value + gap))


def _quantity_value(t: Any, name: str, raw: str) -> ColumnElement[bool]:
    parts = [unescape(p) for p in split_value(raw, "|")]
    if len(parts) not in (1, 3):
        raise bad_request(f"Search parameter {name!r}: {raw!r} is not [prefix]number[|system|code]")
    prefix, num = _split_prefix(parts[0], name)
    conds = [_number_cond(t.c.value, name, prefix, num)]
    if len(parts) == 3:
        if parts[1]:
            conds.append(t.c.system == cut(parts[1]))
        if parts[2]:
            conds.append(t.c.code == cut(parts[2]))
    return and_(*conds)


def _uri_value(t: Any, mod: str | None, raw: str) -> ColumnElement[bool]:
    v = unescape(raw)
    if mod == "below":
        return and_(t.c.value >= cut(v), t.c.value < prefix_upper(cut(v)))
    if mod == "above":
        candidates = {v}
        s = v
        while "/" in s.rstrip("/"):
            s = s.rstrip("/").rsplit("/", 1)[0]
            if s.endswith((":/", ":")):
                break
            candidates.add(s)
        return t.c.value.in_(sorted(cut(c) for c in candidates))
    return t.c.value == cut(v)


# -- parameters ------------------------------------------------------------------------------------

def _ids_of(rtype: str | None) -> Select[Any]:
    if rtype is None:  # system level: (type, id) pairs
        return select(R.c.res_type, R.c.res_id).where(R.c.deleted.is_(False))
    return select(R.c.res_id).where(R.c.res_type == rtype, R.c.deleted.is_(False))


def _parse_bool(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise bad_request(f"Search parameter {name!r}: :missing takes true or false, not {value!r}")
    return value == "true"


def positive_ids(rtype: str | None, key: str, value: str, cx: Context, depth: int = 0) -> tuple[Select[Any], bool]:
    """(SELECT res_id of `rtype` matching `key=value` positively, negate). negate means NOT IN."""
    if rtype is None and (key.startswith("_has:") or "." in key):
        raise UnknownParameter(key, "chains and _has need a resource type")
    if key.startswith("_has:"):
        return _has(rtype, key, value, cx, depth), False
    name, _, rest = key.partition(".")
    code, _, mod = name.partition(":")
    mod = mod or None
    if rest:
        return _chain(rtype, code, mod, rest, value, cx, depth), False
    if code == "_id":
        if mod:
            raise bad_request(f"Search parameter '_id' takes no modifier (got :{mod})")
        ids = [unescape(v)[:64] for v in split_value(value)]
        return _ids_of(rtype).where(R.c.res_id.in_(ids)), False
    if code == "_lastUpdated":
        if mod:
            raise bad_request(f"Search parameter '_lastUpdated' takes no modifier (got :{mod})")
        conds = [_date_value(R.c.last_updated, R.c.last_updated, code, v, cx.now_us) for v in split_value(value)]
        return _ids_of(rtype).where(or_(*conds)), False
    if code in ("_text", "_content"):
        from service.search.fulltext import text_ids

        return text_ids(rtype, code, mod, value), False
    if code == "_list":
        return _list_ids(rtype, mod, value, cx), False
    if rtype is None:
        param = lookup("Patient", code) if code in COMMON_INDEXED else None
        if param is None:
            raise UnknownParameter(key, f"{code!r} is not a parameter common to all resource types")
    else:
        param = lookup(rtype, code)
    if param is None:
        from service.search.composite import composites_for

        comp = composites_for(rtype).get(code)
        if comp is not None:
            from service.search.composite import composite_ids

            return composite_ids(rtype, comp, mod, value, cx), False
        if code in NOT_SUPPORTED:
            raise UnknownParameter(key, NOT_SUPPORTED[code])
        raise UnknownParameter(key, f"{rtype} has no search parameter {code!r}")
    return _param_ids(rtype, param, mod, value, cx)


def _param_ids(rtype: str | None, param: SearchParam, mod: str | None, value: str, cx: Context
               ) -> tuple[Select[Any], bool]:
    t = TABLE_FOR[param.type]
    code = param.code
    allowed = modifiers()[param.type] + (list(valueset_modifiers.MODIFIERS) if param.type == "token" else [])
    if mod is not None and mod not in allowed and not (param.type == "reference" and mod in RESOURCE_TYPES):
        raise UnknownParameter(f"{code}:{mod}", f"search parameter {code!r} ({param.type}) does not support the "
                               f"modifier :{mod} (supported: {', '.join(':' + m for m in allowed)})")
    where_param = param_is(t.c.param, rtype, code, ":of-type" if mod == "of-type" else "")  # (derived: its sources)
    if rtype is None:
        base = select(t.c.res_type, t.c.res_id).where(where_param)
    else:
        base = select(t.c.res_id).where(t.c.res_type == rtype, where_param)
    if mod == "missing":
        return base, _parse_bool(code, value)
    values = split_value(value)
    if any(v == "" for v in values):
        raise bad_request(f"Search parameter {code!r} has an empty value")
    negate = False
    if param.type == "token" and mod in valueset_modifiers.MODIFIERS:  # :in / :not-in (valueset_modifiers.py)
        conds = [valueset_modifiers.condition(t, code, mod, unescape(v)) for v in values]
        negate = mod == "not-in"
    elif param.type == "token":
        conds = [_token_value(t, code, mod if mod != "not" else None, v) for v in values]
        negate = mod == "not"
    elif param.type == "string":
        conds = [_string_value(t, code, mod, v) for v in values]
    elif param.type == "reference":
        conds = [_reference_value(t, param, mod, v, cx.base) for v in values]
    elif param.type == "date":
        conds = [_date_value(t.c.low, t.c.high, code, v, cx.now_us) for v in values]
    elif param.type == "number":
        conds = []
        for v in values:
            prefix, num = _split_prefix(v, code)
            conds.append(_number_cond(t.c.value, code, prefix, num))
    elif param.type == "quantity":
        conds = [_quantity_value(t, code, v) for v in values]
    else:
        conds = [_uri_value(t, mod, v) for v in values]
    return base.where(or_(*conds)), negate


def _list_ids(rtype: str | None, mod: str | None, value: str, cx: Context) -> Select[Any]:
    """`_list=List/<id>` (or `<id>`): the resources the List's entries name, when the caller may see the List
    (a hidden List is a missing one: nothing matches). Functional lists (`$current-problems`) are not supported."""
    if mod is not None:
        raise UnknownParameter(f"_list:{mod}", "_list takes no modifiers")
    lists = []
    for v in split_value(value):
        lid = unescape(v).removeprefix(cx.base + "/").removeprefix("List/")
        if lid.startswith("$"):
            raise UnknownParameter("_list", f"functional lists such as {lid!r} are not supported")
        if not lid or "/" in lid:
            raise bad_request(f"Search parameter '_list': {v!r} is not a List id or List/<id>")
        lists.append(lid[:64])
    visible = _restrict(_ids_of("List").where(R.c.res_id.in_(lists)), "List", cx)
    t = sp_reference
    if rtype is None:
        return select(t.c.target_type, t.c.target_id).where(
            t.c.res_type == "List", t.c.param == "item", t.c.target_type.is_not(None), t.c.res_id.in_(visible))
    return select(t.c.target_id).where(t.c.res_type == "List", t.c.param == "item", t.c.target_type == rtype,
                                       t.c.res_id.in_(visible))


def _chain(rtype: str, code: str, mod: str | None, rest: str, value: str, cx: Context, depth: int
           ) -> Select[Any]:
    if depth >= MAX_CHAIN:
        raise bad_request(f"Chains deeper than {MAX_CHAIN} are not supported")
    param = lookup(rtype, code)
    if param is None:
        raise UnknownParameter(code, f"{rtype} has no search parameter {code!r}")
    if param.type != "reference":
        raise bad_request(f"Search parameter {code!r} is a {param.type}, so it cannot be chained")
    if mod is not None and mod not in RESOURCE_TYPES:
        raise bad_request(f"A chained parameter takes a resource type as modifier, not :{mod}")
    chained_code = rest.split(".", 1)[0].split(":", 1)[0]
    targets = [mod] if mod else [tt for tt in param.targets if tt in RESOURCE_TYPES and (
        chained_code in ("_id", "_lastUpdated") or chained_code.startswith("_has") or lookup(tt, chained_code))]
    if not targets:
        raise UnknownParameter(f"{code}.{rest}", f"no target type of {rtype}.{code} has a parameter "
                                                 f"{chained_code!r}")
    t = sp_reference
    branches = []
    for target in targets:
        inner, neg = positive_ids(target, rest, value, cx, depth + 1)
        if neg:
            inner = _ids_of(target).where(R.c.res_id.not_in(inner))
        inner = _restrict(inner, target, cx)
        branches.append(and_(t.c.target_type == target, t.c.target_id.in_(inner)))
    return select(t.c.res_id).where(t.c.res_type == rtype, t.c.param == code, or_(*branches))


def _has(rtype: str, key: str, value: str, cx: Context, depth: int) -> Select[Any]:
    if depth >= MAX_CHAIN:
        raise bad_request(f"_has nested deeper than {MAX_CHAIN} is not supported")
    parts = key.split(":", 3)
    if len(parts) != 4 or not all(parts):
        raise bad_request(f"{key!r} is not _has:Type:reference:parameter")
    _, src, ref, rest = parts
    if src not in RESOURCE_TYPES:
        raise bad_request(f"_has: {src!r} is not a resource type")
    rparam = lookup(src, ref)
    if rparam is None or rparam.type != "reference":
        raise UnknownParameter(key, f"{src} has no reference search parameter {ref!r}")
    inner, neg = positive_ids(src, rest, value, cx, depth + 1)
    if neg:
        inner = _ids_of(src).where(R.c.res_id.not_in(inner))
    inner = _restrict(inner, src, cx)
    t = sp_reference
    return select(t.c.target_id).where(t.c.res_type == src, t.c.param == ref, t.c.target_type == rtype,
                                       t.c.res_id.in_(inner))


def _restrict(ids: Select[Any], rtype: str, cx: Context) -> Select[Any]:
    """Apply the access filter to the ids of a chained or _has step (hidden resources never match)."""
    if cx.filters is None:
        return ids
    cond = cx.filters(rtype)
    if cond is None:
        return ids
    return _ids_of(rtype).where(R.c.res_id.in_(ids), cond)


def criterion(rtype: str | None, key: str, value: str, cx: Context) -> ColumnElement[bool]:
    """The condition on `resource` rows of `rtype` (None: any type) for one parameter occurrence."""
    ids, negate = positive_ids(rtype, key, value, cx)
    col: Any = R.c.res_id if rtype is not None else tuple_(R.c.res_type, R.c.res_id)
    return col.not_in(ids) if negate else col.in_(ids)


# -- combining a search's criteria -------------------------------------------------------------------
# One positive criterion drives the query (`res_id IN (SELECT ...)`: an index range scan feeding
# primary-key lookups); every other one is a correlated EXISTS / NOT EXISTS probe on the index tables'
# (res_type, res_id) index. Without this, SQLite materialises every IN list (all Observations dated after
# 2018, to intersect with one patient's six); PostgreSQL plans both forms as semi-joins.

@dataclass(frozen=True)
class Criterion:
    key: str
    ids: Select[Any] | None  # the matching ids (None when `direct`)
    negate: bool = False
    direct: ColumnElement[bool] | None = None  # a condition on `resource` itself (_id, _lastUpdated)
    rank: int = 9  # how selective it is likely to be as the driver: lower is better


def _rank(rtype: str | None, key: str, value: str) -> int:
    name = key.split(":", 1)[0]
    if key.startswith("_has:") or "." in key:
        return 1
    code, _, mod = key.partition(":")
    if mod == "missing":
        return 8
    param = lookup(rtype or "Patient", code) if rtype is not None or code in COMMON_INDEXED else None
    if code == "_list":
        return 1
    if code in ("_text", "_content"):
        return 6
    if param is None:
        from service.search.composite import composites_for

        return 3 if rtype is not None and code in composites_for(rtype) else 7
    if param.type == "reference":
        return 1
    if param.type == "token":
        if mod == "text":
            return 6
        if "identifier" in name or name in ("_id", "url", "version"):
            return 1
        return 3 if "|" in value else 4
    if param.type == "string":
        return {"exact": 2, "contains": 7}.get(mod or "", 3)
    if param.type == "uri":
        return 3 if not mod else 4
    return 5  # date, number, quantity ranges


def make_criterion(rtype: str | None, key: str, value: str, cx: Context) -> Criterion:
    """One parameter occurrence, to be combined with the others by `combine` (raises like `criterion`)."""
    code, _, mod = key.partition(":")
    if code == "_id" and "." not in key:
        if mod:
            raise bad_request(f"Search parameter '_id' takes no modifier (got :{mod})")
        return Criterion(key, None, direct=R.c.res_id.in_([unescape(v)[:64] for v in split_value(value)]), rank=0)
    if code == "_lastUpdated" and "." not in key:
        if mod:
            raise bad_request(f"Search parameter '_lastUpdated' takes no modifier (got :{mod})")
        conds = [_date_value(R.c.last_updated, R.c.last_updated, code, v, cx.now_us) for v in split_value(value)]
        return Criterion(key, None, direct=or_(*conds), rank=5)
    memo = _memo_key(rtype, key, code, mod, value, cx)
    if memo is not None and (found := _CRITERIA.get(memo)) is not None:
        return found
    ids, negate = positive_ids(rtype, key, value, cx)
    made = Criterion(key, ids, negate, rank=_rank(rtype, key, value))
    if memo is not None:
        if len(_CRITERIA) >= _CRITERIA_SIZE:
            _CRITERIA.clear()
        _CRITERIA[memo] = made
    return made


# Criteria that are a pure function of (type, parameter, value, base) are kept per process: building their
# SQL was a tenth of a search's CPU, and callers only derive new statements from them (SQLAlchemy's generative
# API never changes the kept one). Not kept: chains and _has (they carry the access filter), dates (relative to
# now), :in/:not-in (terminology), composites and the special parameters.
_PURE_TYPES = frozenset({"token", "string", "reference", "uri", "number", "quantity"})
_CRITERIA: dict[tuple[str, str, str, str, int], Criterion] = {}
_CRITERIA_SIZE = 4096


def _memo_key(rtype: str | None, key: str, code: str, mod: str, value: str, cx: Context
              ) -> tuple[str, str, str, str, int] | None:
    if rtype is None or "." in key or code.startswith("_") or mod in valueset_modifiers.MODIFIERS:
        return None
    param = lookup(rtype, code)
    if param is None or param.type not in _PURE_TYPES:
        return None
    return (rtype, key, value, cx.base, id(param))  # (a parameter registered again is another one)


def _exists(rtype: str | None, ids: Select[Any]) -> ColumnElement[bool]:
    cols = list(ids.selected_columns)
    if rtype is None:  # (res_type, res_id) pairs
        return ids.where(cols[0] == R.c.res_type, cols[1] == R.c.res_id).exists()
    return ids.where(cols[0] == R.c.res_id).exists()


def combine(rtype: str | None, criteria: list[Criterion], *, driven: bool = False) -> list[ColumnElement[bool]]:
    """The WHERE conditions for a search's criteria (ANDed): directs on `resource`, one driver as IN,
    the rest as correlated (NOT) EXISTS. `driven`: something else drives the query (a compartment)."""
    out = [c.direct for c in criteria if c.direct is not None]
    positive = [c for c in criteria if c.ids is not None and not c.negate]
    by_id = driven or any(c.rank == 0 for c in criteria)  # primary-key lookups already drive the query
    driver = None if by_id or not positive else min(positive, key=lambda c: c.rank)
    col: Any = R.c.res_id if rtype is not None else tuple_(R.c.res_type, R.c.res_id)
    for c in criteria:
        if c.ids is None:
            continue
        if c is driver:
            out.append(col.in_(c.ids))
        else:
            probe = _exists(rtype, c.ids)
            out.append(not_(probe) if c.negate else probe)
    return out


def compartment_cond(rtype: str | None, patient_ids: list[str] | frozenset[str]) -> ColumnElement[bool]:
    c = sp_compartment
    if rtype is None:
        return tuple_(R.c.res_type, R.c.res_id).in_(
            select(c.c.res_type, c.c.res_id).where(c.c.patient_id.in_(sorted(patient_ids))))
    return R.c.res_id.in_(select(c.c.res_id).where(c.c.res_type == rtype, c.c.patient_id.in_(sorted(patient_ids))))


def security_cond(rtype: str | None, labels: frozenset[tuple[str, str]]) -> ColumnElement[bool]:
    t = sp_token
    conds = [and_(t.c.code == code, t.c.system == system) if system else t.c.code == code
             for system, code in sorted(labels)]
    if rtype is None:
        return tuple_(R.c.res_type, R.c.res_id).not_in(
            select(t.c.res_type, t.c.res_id).where(t.c.param == "_security", or_(*conds)))
    return R.c.res_id.not_in(select(t.c.res_id).where(t.c.res_type == rtype, t.c.param == "_security", or_(*conds)))


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


__all__ = [
    "MAX_US",
    "MIN_US",
    "Context",
    "Criterion",
    "UnknownParameter",
    "combine",
    "compartment_cond",
    "criterion",
    "make_criterion",
    "security_cond",
    "split_value",
    "true",
    "unescape",
]
