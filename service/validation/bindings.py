"""The base specification's required bindings (data/bindings.json, built by build_definitions.py).

A `code` bound to a required ValueSet must be one of its codes; a Coding from one of the ValueSet's code systems
must be one of that system's codes in it (a Coding from another system is for the element's other codings).
Diagnostics name the ValueSet by URL and name and list what is allowed (short sets in full).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "bindings.json"
VERSION = "4.0.1"


@cache
def valuesets() -> dict[str, tuple[str, frozenset[str], dict[str, frozenset[str]]]]:
    raw: dict[str, Any] = json.loads(DATA.read_text())
    out = {}
    for url, vs in raw.items():
        systems = {s: frozenset(c) for s, c in vs["codes"].items()}
        out[url] = (vs["name"], frozenset().union(*systems.values()), systems)
    return out


def _named(url: str, name: str, allowed: frozenset[str]) -> str:
    shown = ", ".join(sorted(allowed)) if len(allowed) <= 12 else f"{len(allowed)} codes"
    return f"the required ValueSet {url}|{VERSION} ({name}; allowed: {shown})"


def code_problem(url: str, code: str) -> str | None:
    vs = valuesets().get(url)
    if vs is None or code in vs[1]:
        return None
    return f"{code[:80]!r} is not in {_named(url, vs[0], vs[1])}"


def coding_problem(url: str, system: str, code: str) -> str | None:
    vs = valuesets().get(url)
    if vs is None or system not in vs[2] or code in vs[2][system]:
        return None
    return f"{code[:80]!r} from {system} is not in {_named(url, vs[0], vs[2][system])}"
