"""Plain element paths evaluated natively: nearly every search parameter's expression is `Type.a.b` or
`(Type.a as T)`, and walking the JSON for those is many times cheaper than a FHIRPath engine (indexing runs on
every write). Which members are choice elements (`value[x]`) comes from fhirpathpy's own R4 model, so the
values are the engine's. Anything else (functions, indexers, unions, a cast on an element that is not a choice)
is left to fhirpathpy: `compile_plain` returns None for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fhirpathpy.models import models

_PLAIN = re.compile(r"^([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z0-9]*)+)(?:\s+as\s+([A-Za-z]+))?$")
_MODEL = models["r4"]
_EXTENSION_VALUE = re.compile(r"^([A-Z][A-Za-z]+)\.extension\('([^'\\]+)'\)\.value$")
_CAST_THEN = re.compile(r"^\(\s*([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z0-9]*)+)\s+as\s+([A-Z][A-Za-z]+)\s*\)"
                        r"((?:\.[a-z][A-Za-z0-9]*)+)$")

Getter = Callable[[dict[str, Any]], list[Any]]


def _element(path: str, member: str) -> tuple[str, tuple[str, ...] | None]:
    """(the next path, the choice types if `member` is a choice element) of `member` under `path`."""
    t: str | None = path
    while t:
        candidate = f"{t}.{member}"
        if candidate in _MODEL["choiceTypePaths"]:
            return candidate, tuple(_MODEL["choiceTypePaths"][candidate])
        if candidate in _MODEL["path2Type"]:
            return _MODEL["path2Type"][candidate], None
        if candidate in _MODEL["pathsDefinedElsewhere"]:
            return _MODEL["pathsDefinedElsewhere"][candidate], None
        t = _MODEL["type2Parent"].get(t)
    return f"{path}.{member}", None  # a backbone element (its children are under its own path)


@lru_cache(maxsize=4096)
def compile_plain(expression: str) -> Getter | None:
    """A function giving the expression's values on a resource, or None when the expression is not a plain path."""
    text = expression.strip()
    ext = _EXTENSION_VALUE.match(text)
    if ext is not None:  # `Type.extension('url').value`: our own extensions' search parameters
        return _extension_value(ext.group(1), ext.group(2))
    tail = _CAST_THEN.match(text)
    if tail is not None:  # `(Type.a as T).b.c`: the cast's values, then plain members of T
        return _then(compile_plain(f"({tail.group(1)} as {tail.group(2)})"), tail.group(2), tail.group(3))
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    m = _PLAIN.match(text)
    if m is None:
        return None
    rtype, names, cast = m.group(1), m.group(2)[1:].split("."), m.group(3)
    steps: list[tuple[str, ...]] = []  # the JSON keys to take at each step
    path = rtype
    for i, name in enumerate(names):
        path, choices = _element(path, name)
        if choices is None:
            if cast is not None and i == len(names) - 1:
                return None  # a cast on an element that is not a choice: the engine checks its type
            steps.append((name,))
        else:
            wanted = [c for c in choices if cast is None or c.lower() == cast.lower()]
            steps.append(tuple(name + c[:1].upper() + c[1:] for c in wanted))
    keys = tuple(steps)

    def get(resource: dict[str, Any]) -> list[Any]:
        if resource.get("resourceType") != rtype:
            return []
        return _walk([resource], keys)

    return get


def _walk(values: list[Any], steps: tuple[tuple[str, ...], ...]) -> list[Any]:
    """The values under `values` along `steps` (at each step, the members named by any of its keys)."""
    for step in steps:
        out: list[Any] = []
        for v in values:
            if isinstance(v, dict):
                for key in step:
                    child = v.get(key)
                    if isinstance(child, list):
                        out.extend(c for c in child if c is not None)
                    elif child is not None:
                        out.append(child)
        if not out:
            return []
        values = out
    return values


def _then(first: Getter | None, typ: str, members: str) -> Getter | None:
    """`first`'s values, then plain members under type `typ` (None if one of them is a choice element)."""
    if first is None:
        return None
    names = members[1:].split(".")
    path = typ
    for name in names:
        path, choices = _element(path, name)
        if choices is not None:
            return None

    steps = tuple((name,) for name in names)

    def get(resource: dict[str, Any]) -> list[Any]:
        values = first(resource)
        return _walk(values, steps) if values else []

    return get


def _extension_value(rtype: str, url: str) -> Getter:
    """The values (`value[x]`, whichever type) of the resource's own extensions with this url."""
    def get(resource: dict[str, Any]) -> list[Any]:
        if resource.get("resourceType") != rtype:
            return []
        out: list[Any] = []
        for ext in resource.get("extension") or ():
            if isinstance(ext, dict) and ext.get("url") == url:
                out += [v for k, v in ext.items() if k.startswith("value") and k[5:6].isupper() and v is not None]
        return out

    return get
