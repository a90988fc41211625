"""The search-parameter registry, loaded from the compiled definitions in `data/` (see build_definitions).

`params_for(rtype)` gives every parameter a type supports: its own from the official R4 definitions,
the Resource-level ones (`_tag`, `_profile`, `_security`, `_source`), and any custom parameter added
with `register_custom`. FHIRPath expressions are compiled once per type, on first use.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhirpathpy import compile as fp_compile
from fhirpathpy.models import models

DATA = Path(__file__).resolve().parent / "data"
SPEC_URL = "http://hl7.org/fhir/SearchParameter/"
# Answered from the `resource` table itself rather than an index table.
RESOURCE_COLUMNS = {"_id": "token", "_lastUpdated": "date"}
# Resource-level parameters we index for every type.
COMMON_INDEXED = ("_tag", "_profile", "_security", "_source")


@dataclass
class SearchParam:
    code: str
    type: str  # string | token | reference | date | number | quantity | uri
    expressions: list[tuple[str, str | None]]  # (FHIRPath, reference type filter from resolve() is T)
    targets: tuple[str, ...] = ()
    definition: str = ""
    documentation: str = ""
    _compiled: list[tuple[Any, str | None]] | None = field(default=None, repr=False)

    def compiled(self) -> list[tuple[Any, str | None]]:
        if self._compiled is None:
            self._compiled = [(fp_compile(e, models["r4"]), rt) for e, rt in self.expressions]
        return self._compiled

    def capability(self) -> dict[str, Any]:
        out = {"name": self.code, "definition": self.definition, "type": self.type}
        if self.documentation:
            out["documentation"] = self.documentation
        return out


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return json.loads((DATA / "search_parameters.json").read_text())


@lru_cache(maxsize=1)
def compartment_params() -> dict[str, list[str]]:
    """Resource type -> the parameters that put it in a patient's compartment."""
    return json.loads((DATA / "compartment_patient.json").read_text())


@lru_cache(maxsize=1)
def summary_elements() -> dict[str, list[str]]:
    return json.loads((DATA / "summary_elements.json").read_text())


def modifiers() -> dict[str, list[str]]:
    return _raw()["modifiers"]


_lock = threading.Lock()
_by_type: dict[str, dict[str, SearchParam]] = {}
_custom: dict[str, dict[str, SearchParam]] = {}


def _rebase(expr: str, rtype: str) -> str:
    for prefix in ("Resource.", "DomainResource."):
        if expr.startswith(prefix):
            return rtype + "." + expr[len(prefix):]
        if expr.startswith("(" + prefix):
            return "(" + rtype + "." + expr[len(prefix) + 1:]
    return expr


def register_custom(rtype: str, code: str, ptype: str, expression: str, *, targets: tuple[str, ...] = (),
                    definition: str = "", documentation: str = "") -> None:
    """Add a custom parameter (e.g. a UK Core extension). Existing data needs `sharedcare search reindex`.

    The expression is compiled like the built-in definitions (`build_definitions.expressions_for`): a union
    `A.x | A.y` becomes one expression per branch and `X.where(resolve() is T)` a reference-type filter.
    """
    from service.search.build_definitions import expressions_for

    exprs = [(str(e), t) for e, t in expressions_for(expression, rtype)] or [(expression, None)]
    param = SearchParam(code, ptype, exprs, targets, definition or f"urn:sharedcare:sp:{code}", documentation)
    with _lock:
        _custom.setdefault(rtype, {})[code] = param
        _by_type.pop(rtype, None)


def params_for(rtype: str) -> dict[str, SearchParam]:
    found = _by_type.get(rtype)
    if found is not None:
        return found
    raw = _raw()
    targets = raw["targets"]
    out: dict[str, SearchParam] = {}
    common = raw["params"].get("Resource", {})
    for code in COMMON_INDEXED:
        ptype, exprs, tix, sid = common[code]
        out[code] = SearchParam(code, ptype, [(_rebase(e, rtype), rt) for e, rt in exprs], tuple(targets[tix]),
                                SPEC_URL + sid)
    for code, (ptype, exprs, tix, sid) in raw["params"].get(rtype, {}).items():
        out[code] = SearchParam(code, ptype, [(e, rt) for e, rt in exprs], tuple(targets[tix]), SPEC_URL + sid)
    out.update(_custom.get(rtype, {}))
    with _lock:
        _by_type[rtype] = out
    return out


def lookup(rtype: str, code: str) -> SearchParam | None:
    return params_for(rtype).get(code)
