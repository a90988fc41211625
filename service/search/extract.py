"""Index extraction: a resource -> rows for the index tables (evaluating each parameter's FHIRPath).

`extract(resource, base)` returns {table name: [row dict, ...]} (whose patients the resource belongs to is
service.ownership's answer, kept with the version). Pure (no I/O): the write listener, `search reindex` and the benchmark loader
all call it.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from service.fhir.types import RESOURCE_TYPES
from service.search.derived import sources
from service.search.params import SearchParam, params_for
from service.search.plainpath import compile_plain
from service.search.values import MAX_US, MIN_US, cut, date_range, normalize, period_range

log = logging.getLogger("sharedcare.search")

Rows = dict[str, list[dict[str, Any]]]


def parse_reference(ref: str, base: str) -> tuple[str | None, str | None, str | None]:
    """(target_type, target_id, url). Our own absolute URLs become local; others stay as url."""
    if not ref or ref.startswith("#"):
        return None, None, None
    if base and ref.startswith(base + "/"):
        ref = ref[len(base) + 1:]
    if "://" in ref or ref.startswith("urn:"):
        return None, None, cut(ref)
    parts = ref.split("/")
    if len(parts) >= 2 and parts[0] in RESOURCE_TYPES and parts[1] and (
            len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history")):
        return parts[0], parts[1][:64], None
    return None, None, cut(ref)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # HumanName, Address, and the like: every string part
        out: list[str] = []
        for k, v in value.items():
            if k in ("use", "id", "extension", "period", "type"):
                continue
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list):
                out.extend(x for x in v if isinstance(x, str))
        return out
    return []


def _token_rows(code: str, value: Any, rows: Rows) -> None:
    out = rows.setdefault("token", [])
    if isinstance(value, bool):
        out.append({"param": code, "system": "", "code": "true" if value else "false", "text": None})
    elif isinstance(value, (str, int, float, Decimal)):
        out.append({"param": code, "system": "", "code": cut(str(value)), "text": None})
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and (coding.get("code") or coding.get("display")):
                    out.append({"param": code, "system": cut(coding.get("system") or ""),
                                "code": cut(str(coding.get("code") or "")),
                                "text": normalize(coding["display"]) if coding.get("display") else None})
            if isinstance(value.get("text"), str):
                out.append({"param": code, "system": "", "code": "", "text": normalize(value["text"])})
        elif "code" in value:  # Coding
            out.append({"param": code, "system": cut(value.get("system") or ""), "code": cut(str(value["code"])),
                        "text": normalize(value["display"]) if value.get("display") else None})
        elif "value" in value:  # Identifier, ContactPoint
            itype = value.get("type") if isinstance(value.get("type"), dict) else {}
            text = itype.get("text") if isinstance(itype.get("text"), str) else None
            out.append({"param": code, "system": cut(value.get("system") or ""), "code": cut(str(value["value"])),
                        "text": normalize(text) if text else None})
            for coding in itype.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code"):
                    out.append({"param": code + ":of-type", "system": cut(coding.get("system") or ""),
                                "code": cut(f"{coding['code']}|{value['value']}"), "text": None})


def _reference_rows(code: str, value: Any, base: str, type_filter: str | None, rows: Rows) -> None:
    out = rows.setdefault("reference", [])
    if isinstance(value, str):
        ttype, tid, url = parse_reference(value, base)
        if (type_filter is None or ttype == type_filter) and (ttype or url):
            out.append({"param": code, "target_type": ttype, "target_id": tid, "url": url,
                        "ident_system": None, "ident_value": None})
        return
    if not isinstance(value, dict):
        return
    ttype, tid, url = parse_reference(value["reference"], base) if isinstance(value.get("reference"), str) \
        else (None, None, None)
    if type_filter is not None and ttype != type_filter and not (ttype is None and value.get("type") == type_filter):
        return
    ident = value.get("identifier") if isinstance(value.get("identifier"), dict) else None
    isys = cut(ident.get("system") or "") if ident else None
    ival = cut(str(ident["value"])) if ident and ident.get("value") is not None else None
    if ttype or url or ival or value:  # a contained or display-only reference still counts as present
        out.append({"param": code, "target_type": ttype, "target_id": tid, "url": url,
                    "ident_system": isys, "ident_value": ival})


def _date_rows(code: str, value: Any, rows: Rows) -> None:
    out = rows.setdefault("date", [])
    rng = None
    if isinstance(value, str):
        rng = date_range(value)
    elif isinstance(value, dict):
        if "start" in value or "end" in value:
            rng = period_range(value)
        elif "event" in value or "repeat" in value:  # Timing
            for ev in value.get("event") or []:
                if isinstance(ev, str):
                    _date_rows(code, ev, rows)
            bounds = (value.get("repeat") or {}).get("boundsPeriod")
            if isinstance(bounds, dict):
                _date_rows(code, bounds, rows)
            return
    if rng is not None:
        out.append({"param": code, "low": max(rng[0], MIN_US), "high": min(rng[1], MAX_US)})


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def _quantity_rows(code: str, value: Any, rows: Rows) -> None:
    if not isinstance(value, dict):
        return
    num = _number(value.get("value"))
    if num is None:
        return
    out = rows.setdefault("quantity", [])
    if "currency" in value:
        out.append({"param": code, "value": num, "system": "urn:iso:std:iso:4217", "code": cut(value["currency"])})
        return
    system = cut(value.get("system") or "")
    units = {u for u in (value.get("code"), value.get("unit")) if isinstance(u, str) and u}
    for unit in sorted(units) or [""]:
        out.append({"param": code, "value": num, "system": system, "code": cut(unit)})


_HEAD = re.compile(r"^\(*\s*[A-Z][A-Za-z]+((?:\.[a-z][A-Za-z0-9]*(?=$|[.\s)\[]))+)")


@lru_cache(maxsize=4096)
def _path_members(expression: str) -> tuple[str, ...]:
    """The plain element path an expression `Type.a.b...` starts with (`Patient.name.family` -> name,
    family; `(Observation.value as Quantity)` -> value); stops at a function, cast or indexer."""
    m = _HEAD.match(expression)
    if m is None or "|" in expression:  # a union may find values through its other branches
        return ()
    return tuple(m.group(1)[1:].split("."))


def _children(values: list[Any], member: str) -> list[Any]:
    """The values of element `member` (also a choice element `memberX`, or a primitive's `_member`)."""
    out: list[Any] = []
    for v in values:
        if not isinstance(v, dict):
            continue
        for key, child in v.items():
            name = key[1:] if key[:1] == "_" else key
            if name == member or (name.startswith(member) and name[len(member):len(member) + 1].isupper()):
                out.extend(child if isinstance(child, list) else [child])
    return out


_EMPTY_WHEN_ABSENT: dict[tuple[str, str], bool] = {}


def _empty_when_absent(expression: str, fn: Any, rtype: str) -> bool:
    """Whether the expression gives nothing on a resource with none of its elements. Not so for a boolean
    expression such as `Patient.deceased.exists() and Patient.deceased != false` (false when absent)."""
    key = (rtype, expression)
    found = _EMPTY_WHEN_ABSENT.get(key)
    if found is None:
        try:
            found = list(fn({"resourceType": rtype})) == []
        except Exception:  # noqa: BLE001  (not evaluable: never skip it)
            found = False
        _EMPTY_WHEN_ABSENT[key] = found
    return found


def can_match(expression: str, resource: dict[str, Any]) -> bool:
    """False when the expression's leading element path is absent from the resource (for an expression
    that gives nothing then, see `_empty_when_absent`): most of a type's parameters, on a typical resource."""
    values: list[Any] = [resource]
    for member in _path_members(expression):
        values = _children(values, member)
        if not values:
            return False
    return True


def _getters(param: SearchParam, rtype: str) -> list[tuple[Any, str | None]]:
    """(a function giving the values on a resource, reference type filter) per expression of the parameter:
    a plain path's own getter, else the FHIRPath one (skipped on a resource without the expression's leading
    elements when it then gives nothing)."""
    out: list[tuple[Any, str | None]] = []
    for (fn, type_filter), (expression, _) in zip(param.compiled(), param.expressions, strict=True):
        plain = compile_plain(expression)
        out.append((plain if plain is not None else _fhirpath_getter(param.code, expression, fn, rtype), type_filter))
    return out


def _fhirpath_getter(code: str, expression: str, fn: Any, rtype: str) -> Any:
    def get(resource: dict[str, Any]) -> list[Any]:
        if not can_match(expression, resource) and _empty_when_absent(expression, fn, rtype):
            return []
        try:
            return list(fn(resource))
        except Exception as exc:  # noqa: BLE001  (a definition fhirpathpy cannot evaluate: index nothing for it
            log.debug("search parameter %s not evaluable: %s", code, exc)
            return []
    return get


# rtype -> (the parameters it was made from, [(code, type, getters)]): remade when the parameters change
_PLANS: dict[str, tuple[dict[str, SearchParam], list[tuple[str, str, list[tuple[Any, str | None]]]]]] = {}


def _plan(rtype: str) -> list[tuple[str, str, list[tuple[Any, str | None]]]]:
    """Every parameter of the type that has index rows (service.search.derived), with its getters, worked out
    once (per set of parameters)."""
    params = params_for(rtype)
    found = _PLANS.get(rtype)
    if found is None or found[0] is not params:
        derived = sources(rtype)  # (searched over other parameters' rows: none of their own)
        found = _PLANS[rtype] = (params, [(code, p.type, _getters(p, rtype)) for code, p in params.items()
                                          if code not in derived])
    return found[1]


def extract(resource: dict[str, Any], base: str = "") -> Rows:
    rows: Rows = {}
    for code, ptype, getters in _plan(resource["resourceType"]):
        for getter, type_filter in getters:
            for value in getter(resource):
                if ptype == "token":
                    _token_rows(code, value, rows)
                elif ptype == "string":
                    for s in _strings(value):
                        if s.strip():
                            rows.setdefault("string", []).append({"param": code, "value": normalize(s),
                                                                  "exact": cut(s)})
                elif ptype == "reference":
                    _reference_rows(code, value, base, type_filter, rows)
                elif ptype == "date":
                    _date_rows(code, value, rows)
                elif ptype == "number":
                    num = _number(value)
                    if num is not None:
                        rows.setdefault("number", []).append({"param": code, "value": num})
                elif ptype == "quantity":
                    _quantity_rows(code, value, rows)
                elif ptype == "uri" and isinstance(value, str) and value:
                    rows.setdefault("uri", []).append({"param": code, "value": cut(value)})
    from service.search.composite import composite_rows

    composite_rows(resource, base, rows)
    return rows
