"""Composite search parameters (`code-value-quantity=http://loinc.org|29463-7$gt100`), from the official
definitions (`build_definitions.build_composites`).

A composite matches when one element (the Observation itself, one of its components, one useContext, ...)
matches every component's value. Indexing writes each component's values into its own type's table under
the parameter name `<code>~<component>~<element>` (`code-value-quantity~1~0` is the quantity of element 0),
so the ordinary value conditions apply, and a query joins the components of the same element (an element lacking
a value for any component could never match, and gets no rows):

    res_id IN (SELECT c0.res_id FROM sp_token c0 WHERE c0.param IN ('x~0~0', 'x~0~1', ...) AND <token value>
               AND EXISTS (SELECT 1 FROM sp_quantity c1 WHERE c1.res_id = c0.res_id
                           AND c1.param = 'x~1~' || substr(c0.param, ..) AND <quantity value>))

An element past the first MAX_ELEMENTS of a resource is not indexed for composites (documented limit).
Composites take no modifiers and cannot be sorted on (as the specification says).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import String, and_, func, literal, or_, select, union
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select

from service.fhir.outcome import bad_request

MAX_ELEMENTS = 32
SEP = "~"


@dataclass(frozen=True)
class Composite:
    code: str
    rtype: str
    bases: tuple[str, ...]  # element paths: "Observation", "Observation.component"
    components: tuple[tuple[str, str], ...]  # (component type, expression relative to the element)
    definition: str

    @property
    def single(self) -> bool:
        """Whether the only element is the resource itself (one group, element 0)."""
        return self.bases == (self.rtype,)

    def param(self, component: int, element: int) -> str:
        return f"{self.code}{SEP}{component}{SEP}{element}"

    def capability(self) -> dict[str, Any]:
        return {"name": self.code, "definition": self.definition, "type": "composite"}


@cache
def composites_for(rtype: str) -> dict[str, Composite]:
    from service.search.params import SPEC_URL, _raw

    raw = _raw().get("composites", {}).get(rtype, {})
    return {code: Composite(code, rtype, tuple(bases), tuple((t, e) for t, e in comps), SPEC_URL + sid)
            for code, (bases, comps, sid) in raw.items()}


# -- indexing ----------------------------------------------------------------------------------------------

def _walk(values: list[Any], path: list[str]) -> list[Any]:
    from service.search.extract import _children

    for member in path:
        values = _children(values, member)
    return values


@cache
def _steps(expression: str) -> tuple[tuple[str, Any, str], ...]:
    """A component's expression, parsed once: ('resource', path) | ('cast', key, type) | ('element', path)."""
    from service.search.build_definitions import split_top

    out: list[tuple[str, Any, str]] = []
    for part in split_top(expression):
        part = part.strip()
        if part.startswith("%resource."):
            out.append(("resource", part[len("%resource."):].split("."), ""))
        elif ".as(" in part and part.endswith(")"):
            name, _, typ = part[:-1].partition(".as(")
            out.append(("cast", name + typ[:1].upper() + typ[1:], typ))
        else:
            out.append(("element", part.split("."), ""))
    return tuple(out)


def _component_values(element: Any, resource: dict[str, Any], expression: str) -> list[Any]:
    out: list[Any] = []
    for kind, what, typ in _steps(expression):
        if kind == "resource":
            out += _walk([resource], what)
        elif kind == "cast":
            value = element.get(what) if isinstance(element, dict) else None
            if isinstance(value, dict) and typ == "Range":  # a range: its bounds, as quantities
                out += [v for v in (value.get("low"), value.get("high")) if isinstance(v, dict)]
            elif value is not None:
                out += value if isinstance(value, list) else [value]
        else:
            out += _walk([element], what)
    return out


def composite_rows(resource: dict[str, Any], base: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Add the composite parameters' rows of `resource` to `rows` (extract's {table: [row]})."""
    from service.search.derived import stored_composites
    from service.search.extract import _date_rows, _quantity_rows, _reference_rows, _token_rows
    from service.search.values import cut, normalize

    rtype = resource["resourceType"]
    for comp in stored_composites(rtype):  # (not those searched over other rows: service.search.derived)
        elements: list[Any] = []
        for path in comp.bases:
            elements += [resource] if path == rtype else _walk([resource], path.split(".")[1:])
        for i, element in enumerate(elements[:MAX_ELEMENTS]):
            if not isinstance(element, dict):
                continue
            found: list[list[Any]] = []
            for _, expression in reversed(comp.components):  # (the value last named is the one most often absent)
                values = _component_values(element, resource, expression)
                if not values:  # an element without a value for some component never matches: no rows for it
                    break
                found.append(values)
            else:
                found.reverse()
            if len(found) < len(comp.components):
                continue
            for k, ((ctype, _), values) in enumerate(zip(comp.components, found, strict=True)):
                name = comp.param(k, i)
                for value in values:
                    if ctype == "token":
                        _token_rows(name, value, rows)
                    elif ctype == "quantity":
                        _quantity_rows(name, value, rows)
                    elif ctype == "date":
                        _date_rows(name, value, rows)
                    elif ctype == "reference":
                        _reference_rows(name, value, base, None, rows)
                    elif ctype == "string" and isinstance(value, str) and value.strip():
                        rows.setdefault("string", []).append({"param": name, "value": normalize(value),
                                                              "exact": cut(value)})
                    elif ctype == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
                        rows.setdefault("number", []).append({"param": name, "value": float(value)})
                    elif ctype == "uri" and isinstance(value, str) and value:
                        rows.setdefault("uri", []).append({"param": name, "value": cut(value)})


# -- querying ----------------------------------------------------------------------------------------------

def _value_cond(ctype: str, t: Any, name: str, raw: str, cx: Any) -> ColumnElement[bool]:
    from service.search import query as q

    if ctype == "token":
        return q._token_value(t, name, None, raw)
    if ctype == "string":
        return q._string_value(t, name, None, raw)
    if ctype == "date":
        return q._date_value(t.c.low, t.c.high, name, raw, cx.now_us)
    if ctype == "number":
        prefix, num = q._split_prefix(raw, name)
        return q._number_cond(t.c.value, name, prefix, num)
    if ctype == "quantity":
        return q._quantity_value(t, name, raw)
    if ctype == "uri":
        return q._uri_value(t, None, raw)
    from service.search.params import SearchParam

    return q._reference_value(t, SearchParam(name, "reference", []), None, raw, cx.base)


def composite_ids(rtype: str, comp: Composite, mod: str | None, value: str, cx: Any) -> Select[Any]:
    """SELECT res_id of `rtype` resources with one element matching every component of one of the values."""
    from service.search.derived import derived_composite
    from service.search.query import TABLE_FOR, UnknownParameter, split_value

    if mod is not None:
        raise UnknownParameter(f"{comp.code}:{mod}", f"the composite parameter {comp.code!r} takes no modifiers")
    how = derived_composite(rtype, comp.code)  # (searched over other rows: service.search.derived)
    if how is not None and how.either:
        either = union(*[composite_ids(rtype, composites_for(rtype)[c], None, value, cx) for c in how.either])
        found = either.subquery()
        return select(found.c.res_id)
    own = how.params if how is not None else ()  # (the resource's own parameters' rows, one per component)
    first = TABLE_FOR[comp.components[0][0]].alias("c0")
    groups = 1 if comp.single else MAX_ELEMENTS
    element = func.substr(first.c.param, len(comp.param(0, 0)), type_=String)  # the element number
    alternatives = []
    for j, one in enumerate(split_value(value)):
        parts = split_value(one, "$")
        if len(parts) != len(comp.components) or any(p == "" for p in parts):
            raise bad_request(f"Search parameter {comp.code!r}: {one!r} must have {len(comp.components)} values "
                              "separated by '$' (" + "$".join(t for t, _ in comp.components) + ")")
        conds = [_value_cond(comp.components[0][0], first, comp.code, parts[0], cx)]
        for k in range(1, len(comp.components)):
            ctype = comp.components[k][0]
            t = TABLE_FOR[ctype].alias(f"c{k}_{j}")
            same = t.c.param == (own[k] if own else comp.param(k, 0) if comp.single
                                 else literal(comp.param(k, 0)[:-1], String) + element)
            conds.append(select(t.c.res_id).where(t.c.res_type == first.c.res_type, t.c.res_id == first.c.res_id,
                                                  same, _value_cond(ctype, t, comp.code, parts[k], cx)).exists())
        alternatives.append(and_(*conds))
    return select(first.c.res_id).where(first.c.res_type == rtype,
                                        first.c.param.in_([own[0]] if own else [comp.param(0, i) for i in range(groups)]),
                                        or_(*alternatives))
