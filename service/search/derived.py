"""Parameters with no index rows of their own: their rows would repeat other parameters' rows, so they are
searched over those (worked out from the definitions, once per set of parameters).

- A parameter whose expressions are exactly the union of other parameters' of its type (Observation's
  `combo-code` = `code` | `component-code`) is searched as `param IN (those)`.
- A composite whose only element is the resource itself, each of whose components gives what a parameter of its
  type gives (`code-value-quantity`: `code` and `value-quantity`), is searched over those parameters' rows.
- A composite over the resource and its components (`combo-code-value-quantity`) is the composite over the
  resource or the one over its components, with the same components (`code-value-quantity` or
  `component-code-value-quantity`).

An Observation writes 8 index rows instead of 14. (Rows such parameters got before this are never read; a
migration removed them.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.search.composite import Composite, composites_for
from service.search.params import SearchParam, params_for

PLAIN_TYPES = ("token", "quantity")


@dataclass(frozen=True)
class Derived:
    """How a derived composite is searched: over `params` (one per component, the resource's own rows), or as
    any one of the composites `either`."""

    params: tuple[str, ...] = ()
    either: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Found:
    params: dict[str, SearchParam]  # (what it was worked out from)
    plain: dict[str, tuple[str, ...]]  # derived parameter -> its sources
    composites: dict[str, Derived]
    stored: list[Composite]  # the composites with rows of their own


_FOUND: dict[str, _Found] = {}


def _found(rtype: str) -> _Found:
    params = params_for(rtype)
    found = _FOUND.get(rtype)
    if found is None or found.params is not params:
        plain = _plain(params)
        derived = _composites(rtype, params, plain)
        stored = [c for code, c in composites_for(rtype).items() if code not in derived]
        found = _FOUND[rtype] = _Found(params, plain, derived, stored)
    return found


def sources(rtype: str | None) -> dict[str, tuple[str, ...]]:
    """{parameter: the parameters whose rows it is searched over} for the type's derived plain parameters."""
    return _found(rtype).plain if rtype is not None else {}


def param_is(column: Any, rtype: str | None, code: str, suffix: str = "") -> Any:
    """The condition on an index table's `param` column for rows of `code` (+ `suffix`, e.g. ":of-type"): its
    sources' rows when it is derived."""
    read = sources(rtype).get(code, (code,))
    return column == read[0] + suffix if len(read) == 1 else column.in_([n + suffix for n in read])


def derived_composite(rtype: str, code: str) -> Derived | None:
    return _found(rtype).composites.get(code)


def stored_composites(rtype: str) -> list[Composite]:
    """The type's composites that have index rows of their own."""
    return _found(rtype).stored


def _plain(params: dict[str, SearchParam]) -> dict[str, tuple[str, ...]]:
    cover: dict[str, list[str]] = {}
    for code, p in params.items():
        mine = set(p.expressions)
        if p.type not in PLAIN_TYPES or len(mine) < 2:
            continue
        parts = sorted((q for q in params.values() if q is not p and q.type == p.type and set(q.expressions) < mine),
                       key=lambda q: (-len(q.expressions), q.code))
        chosen: list[str] = []
        covered: set[Any] = set()
        for q in parts:
            if not covered & set(q.expressions):
                chosen.append(q.code)
                covered |= set(q.expressions)
        if covered == mine:
            cover[code] = chosen

    def flat(code: str) -> tuple[str, ...]:  # (a source that is itself derived: its own sources)
        return tuple(n for q in cover[code] for n in (flat(q) if q in cover else (q,)))

    return {code: flat(code) for code in cover}


_PARAM_CAST = re.compile(r"\(\s*([A-Z][A-Za-z]+)\.([a-z][A-Za-z0-9]*) as ([A-Za-z]+)\s*\)")
_PARAM_PATH = re.compile(r"([A-Z][A-Za-z]+)\.([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)*)")
_COMPONENT_CAST = re.compile(r"([a-z][A-Za-z0-9]*)\.as\(([A-Za-z]+)\)")
_COMPONENT_PATH = re.compile(r"[a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)*")
# An expression a quantity parameter may have beyond a component's: it never gives a quantity row (SampledData
# has no value of its own), so `value-quantity` gives what `value.as(Quantity)` gives.
_NO_ROWS = {"quantity": {("cast", "value", "sampleddata")}}


def _param_parts(p: SearchParam, rtype: str) -> set[tuple[str, str, str]] | None:
    out = set()
    for expression, type_filter in p.expressions:
        if type_filter is not None:
            return None
        if (m := _PARAM_CAST.fullmatch(expression.strip())) and m[1] == rtype:
            out.add(("cast", m[2], m[3].lower()))
        elif (m := _PARAM_PATH.fullmatch(expression.strip())) and m[1] == rtype:
            out.add(("path", m[2], ""))
        else:
            return None
    return out


def _component_parts(expression: str) -> set[tuple[str, str, str]] | None:
    from service.search.build_definitions import split_top

    out = set()
    for part in split_top(expression):
        part = part.strip()
        if m := _COMPONENT_CAST.fullmatch(part):
            if m[2] == "Range":  # (a composite reads a range's bounds: no parameter gives that)
                return None
            out.add(("cast", m[1], m[2].lower()))
        elif _COMPONENT_PATH.fullmatch(part):
            out.add(("path", part, ""))
        else:
            return None
    return out


def _composites(rtype: str, params: dict[str, SearchParam], plain: dict[str, tuple[str, ...]]
                ) -> dict[str, Derived]:
    comps = composites_for(rtype)
    out: dict[str, Derived] = {}
    for code, comp in comps.items():
        if not comp.single:
            continue
        chosen = []
        for ctype, expression in comp.components:
            want = _component_parts(expression)
            match = None
            for q in params.values():
                have = _param_parts(q, rtype) if q.type == ctype and q.code not in plain else None
                if want and have is not None and want <= have and have - want <= _NO_ROWS.get(ctype, set()):
                    match = q.code
                    break
            if match is None:
                break
            chosen.append(match)
        if len(chosen) == len(comp.components):
            out[code] = Derived(params=tuple(chosen))
    for code, comp in comps.items():
        if len(comp.bases) != 2 or comp.bases[0] != rtype:
            continue
        own = [c.code for c in comps.values() if c.bases == (rtype,) and c.components == comp.components]
        parts = [c.code for c in comps.values() if c.bases == comp.bases[1:] and c.components == comp.components]
        if own and parts:
            out[code] = Derived(either=(own[0], parts[0]))
    return out
