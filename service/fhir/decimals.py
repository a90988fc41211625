"""Decimal fidelity: a client's decimal literals come back exactly as sent (`1.50` stays `1.50`, `1e2` stays `1e2`).

FHIR decimals keep their precision (0.010 is not 0.01), and the JSON form of a decimal is whatever the client
wrote, which the specification allows as long as it is a valid JSON number. We keep the client's literal, so
`1e2` is served as `1e2` (an exact decimal literal of the same value, never rounded through a float).

How: bodies are parsed with orjson as before (fast, strict), so the parsed values are floats; the literals a
float would not reproduce (`1.50` -> 1.5, `1e2` -> 100.0, `0.1000000000000000055511151231257827` -> 0.1) are
collected without going through a float (the stdlib scanner hands us each number's own text) and ride on the
parsed top-level object (`Parsed.decimals`). When the resource is serialised for storage, `restore` puts each
literal back in place of the float's text, matched by value (and, for one value written two ways, in document
order). Reads then serve the stored bytes as they are. Bodies with no such literal cost one regex probe.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from typing import Any

import orjson

# A JSON number with a fraction or an exponent after `:`, `,` or `[` (a cheap probe: it may also hit text inside
# a string, which only costs the exact pass below).
# Only such literals can be written differently by a float: a fraction ending in 0, an exponent, a tiny number
# (0.00000x is written 1e-6 style), or 16 or more digits (15 significant digits always survive a double). Checked by brute force in tests/search/test_fidelity.py.
_PROBE = re.compile(rb"[:,\[]\s*-?(?:\d+\.\d*0|0\.0{4,}\d+|\d+(?:\.\d+)?[eE][-+]?\d+|(?=[\d.]{16,})\d+\.\d+)\s*[,\]}]")
# In serialised JSON: a string (skipped) or a number with a fraction or an exponent.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)')

Decimals = dict[float, list[bytes]]


class Parsed(dict):  # type: ignore[type-arg]
    """A JSON object parsed from a client's body, with the decimal literals a float would not reproduce."""

    __slots__ = ("decimals",)

    def __init__(self, data: dict[str, Any], decimals: Decimals) -> None:
        super().__init__(data)
        self.decimals = decimals


def _floats(body: bytes) -> list[bytes] | None:
    """The text of every number with a fraction or exponent in `body`, in document order; None when the probe
    shows no literal a float would write differently."""
    if not _PROBE.search(body):
        return None  # every number is one a float writes the same way: nothing to keep
    found: list[bytes] = []

    def keep(text: str) -> float:
        found.append(text.encode())
        return 0.0

    try:
        json.loads(body, parse_float=keep, parse_constant=_refuse)
    except ValueError:  # (orjson has accepted the body: anything stdlib refuses has no decimals of interest)
        return None
    return found


def _lossy(pairs: list[tuple[float, bytes]]) -> Decimals | None:
    """{value: [literal, ...]} (document order, the exact ones too) for each value written differently at least once."""
    every: Decimals = {}
    lossy: set[float] = set()
    for value, literal in pairs:
        every.setdefault(value, []).append(literal)
        if orjson.dumps(value) != literal:
            lossy.add(value)
    return {v: every[v] for v in lossy} or None


def lossy_literals(body: bytes) -> Decimals | None:
    """{float value: [literal, ...]} for the numbers in `body` whose float form is written differently."""
    found = _floats(body)
    return None if found is None else _lossy([(float(t), t) for t in found])


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _in_order(node: Any, out: list[float]) -> None:
    if isinstance(node, float):
        out.append(node)
    elif isinstance(node, dict):
        for v in node.values():
            _in_order(v, out)
    elif isinstance(node, list):
        for v in node:
            _in_order(v, out)


# The lossy literals of the body this request parsed last (a unit of work runs in its own context): a PATCH
# document's values reach the stored resource through the patch engine, not as a `Parsed` (see `patched`).
_BODY: ContextVar[Decimals | None] = ContextVar("sharedcare_body_decimals", default=None)


def attach(parsed: Any, body: bytes) -> Any:
    """`parsed` (orjson's result for `body`), as a `Parsed` carrying its lossy literals when there are any.
    Each of a Bundle's entries' resources carries its own (a transaction stores each entry on its own)."""
    if not isinstance(parsed, (dict, list)):
        return parsed
    found = _floats(body)
    decimals = None if found is None else _lossy([(float(t), t) for t in found])
    _BODY.set(decimals)
    if decimals is None or not isinstance(parsed, dict):
        return parsed
    if parsed.get("resourceType") == "Bundle" and isinstance(parsed.get("entry"), list):
        values: list[float] = []
        _in_order(parsed, values)
        if found is not None and len(values) == len(found):  # (else a duplicate key: keep the Bundle's map)
            literal = dict(zip(map(id, values), found, strict=True))  # (floats are objects: by identity)
            for entry in parsed["entry"]:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    mine: list[float] = []
                    _in_order(entry["resource"], mine)
                    own = _lossy([(v, literal[id(v)]) for v in mine])
                    if own is not None:
                        entry["resource"] = Parsed(entry["resource"], own)
    return Parsed(parsed, decimals)


def decimals_of(resource: Any) -> Decimals | None:
    return getattr(resource, "decimals", None)


def restore(content: bytes, decimals: Decimals | None) -> bytes:
    """`content` (orjson's serialisation) with each float written as the client wrote it."""
    if not decimals:
        return content
    used: dict[float, int] = {}

    def put(m: re.Match[bytes]) -> bytes:
        token = m.group()
        if token[:1] == b'"':
            return token
        value = float(token)
        literals = decimals.get(value)
        if not literals:
            return token
        i = used.get(value, 0)
        used[value] = i + 1
        return literals[min(i, len(literals) - 1)]

    return _TOKEN.sub(put, content)


def dumps(resource: Any, like: Any = None) -> bytes:
    """orjson.dumps with the client's decimal literals (of `resource`, or of `like` when it was rebuilt)."""
    return restore(orjson.dumps(resource), decimals_of(resource) or decimals_of(like))


def redumps(obj: Any, source: bytes, option: int | None = None) -> bytes:
    """Serialise `obj`, something made from the JSON `source` (a subset, an indented copy), keeping the decimal
    literals as `source` writes them."""
    return restore(orjson.dumps(obj, option=option), lossy_literals(source))


def patched(after: Any, stored: bytes | None) -> Any:
    """A resource made by patching a stored version: the stored version's literals (the elements the patch left
    alone) and the patch document's (what it wrote) ride along to storage."""
    if not isinstance(after, dict):
        return after
    merged: Decimals = {}
    for source in (decimals_of(after), lossy_literals(stored) if stored else None, _BODY.get()):
        for value, literals in (source or {}).items():
            merged.setdefault(value, []).extend(literals)
    return Parsed(after, merged) if merged else after
