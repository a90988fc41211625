"""Search indexing of our own AuditEvents without FHIRPath on the hot path.

The search engine indexes every resource by evaluating each SearchParameter's FHIRPath with fhirpathpy
(~2-3 ms for an AuditEvent, which has 22 parameters): too slow to pay on every audited read. All
AuditEvent parameters are plain dotted paths (`AuditEvent.agent.who`), so this module walks them
natively and builds the very same rows with the search engine's own row builders. The rows must equal
`service.search.indexer.index_rows` (tests/audit/test_index.py checks it on every kind of event we write).
Parameters whose expressions are not plain paths fall back to the generic evaluation.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import Connection

from service.fhir.stored import Stored
from service.search import extract as X
from service.search import indexer
from service.search.params import params_for

_PLAIN = re.compile(r"^[A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)+$")


def _walk(resource: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    items: list[Any] = [resource]
    for name in path:
        nxt: list[Any] = []
        for it in items:
            if isinstance(it, dict):
                v = it.get(name)
                if isinstance(v, list):
                    nxt.extend(v)
                elif v is not None:
                    nxt.append(v)
        items = nxt
    return items


Plan = list[tuple[str, Any, list[tuple[tuple[str, ...], str | None]] | None]]
_plans: dict[str, tuple[dict[str, Any], Plan]] = {}


def _plan(rtype: str) -> Plan:
    """Per parameter: its plain paths, or None (generic evaluation). Rebuilt when the parameter set
    changes (`register_custom` gives the type a new parameter dict)."""
    params = params_for(rtype)
    cached = _plans.get(rtype)
    if cached is not None and cached[0] is params:
        return cached[1]
    plan: Plan = []
    for code, param in params.items():
        paths = [(tuple(e.split(".")[1:]), tf) for e, tf in param.expressions]
        plain = all(_PLAIN.match(e) for e, _ in param.expressions)
        plan.append((code, param, paths if plain else None))
    _plans[rtype] = (params, plan)
    return plan


def extract(resource: dict[str, Any], base: str) -> X.Rows:
    """As `service.search.extract.extract`, with plain paths walked natively."""
    rtype = resource["resourceType"]
    rows: X.Rows = {}
    for code, param, paths in _plan(rtype):
        if paths is None:
            values = X.values_of(param, resource)
        else:
            values = [(v, tf) for path, tf in paths for v in _walk(resource, path)]
        ptype = param.type
        for value, type_filter in values:
            if ptype == "token":
                X._token_rows(code, value, rows)
            elif ptype == "string":
                for s in X._strings(value):
                    if s.strip():
                        rows.setdefault("string", []).append({"param": code, "value": X.normalize(s),
                                                              "exact": X.cut(s)})
            elif ptype == "reference":
                X._reference_rows(code, value, base, type_filter, rows)
            elif ptype == "date":
                X._date_rows(code, value, rows)
            elif ptype == "uri":
                if isinstance(value, str) and value:
                    rows.setdefault("uri", []).append({"param": code, "value": X.cut(value)})
            else:  # number, quantity: none on AuditEvent; keep the generic path exact
                return X.extract(resource, base)
    return rows


def index_rows(rtype: str, rid: str, resource: dict[str, Any], base: str, owners: Any = ()
               ) -> dict[str, list[dict[str, Any]]]:
    """As `service.search.indexer.index_rows`, with the fast extraction."""
    rows = extract(resource, base)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, rs in rows.items():
        seen: set[tuple[Any, ...]] = set()
        uniq = []
        for r in rs:
            k = tuple(r.values())
            if k not in seen:
                seen.add(k)
                uniq.append({"res_type": rtype, "res_id": rid, **r})
        out[name] = uniq
    out["compartment"] = [{"res_type": rtype, "res_id": rid, "patient_id": p} for p in dict.fromkeys(owners)]
    return out


def index(conn: Connection, stored: Stored, resource: dict[str, Any], base: str) -> None:
    indexer.insert_rows(conn, index_rows(stored.res_type, stored.res_id, resource, base, stored.owners))
