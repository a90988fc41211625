"""Matching a resource against the `?param=value` restrictions of a SMART v2 scope.

Supported, per resource, without the search engine: token parameters on a same-named element
(`category`, `code`, `status`, `type`, `class`, ...: `system|code`, `code` or `|code`), `_security` and
`_tag` (meta), and references (`Organization/x`). A parameter the resource does not carry does not match,
so an unknown restriction denies rather than widens access.
"""

from __future__ import annotations

from typing import Any

META = {"_security": ("meta", "security"), "_tag": ("meta", "tag"), "_profile": ("meta", "profile")}


def _elements(resource: dict[str, Any], name: str) -> list[Any]:
    path = META.get(name, (name,))
    nodes: list[Any] = [resource]
    for step in path:
        nxt: list[Any] = []
        for n in nodes:
            if isinstance(n, dict) and step in n:
                v = n[step]
                nxt.extend(v if isinstance(v, list) else [v])
        nodes = nxt
    return nodes


def _codings(value: Any) -> list[tuple[str | None, str | None]]:
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, dict):
        if "coding" in value:
            return [(c.get("system"), c.get("code")) for c in value["coding"] if isinstance(c, dict)]
        if "code" in value or "system" in value:
            return [(value.get("system"), value.get("code"))]
        if "reference" in value:
            return [(None, value["reference"])]
    return []


def _token_matches(wanted: str, value: Any) -> bool:
    if "|" in wanted:
        system, code = wanted.split("|", 1)
        for s, c in _codings(value):
            if c == code and (system == "" and s is None or system != "" and s == system):
                return True
        return False
    return any(c == wanted for _s, c in _codings(value))


def matches(resource: dict[str, Any], params: tuple[tuple[str, str], ...]) -> bool:
    """True when the resource satisfies every restriction (a comma in a value means any of them)."""
    for name, value in params:
        elements = _elements(resource, name.split(":", 1)[0])
        alternatives = value.split(",")
        if not any(_token_matches(alt, el) for alt in alternatives for el in elements):
            return False
    return True
