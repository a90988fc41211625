"""Compile the official R4 definitions into the compact tables the search engine loads at start-up.

    .venv/bin/python -m service.search.build_definitions [--spec DIR]

Reads (build time only; the service never reads ../shared at run time):
- `search-parameters.json`: every R4 SearchParameter (code, base, type, FHIRPath expression, target);
- `CompartmentDefinition-patient.json`: which parameters put a resource in a patient's compartment;
- the fhir.resources R4B models: which top-level elements are "summary" (for `_summary=true`).
Writes `service/search/data/search_parameters.json`, `compartment_patient.json`, `summary_elements.json`.

Expressions are split per base type (`A.x | B.y` -> A: `A.x`, B: `B.y`); `X.where(resolve() is T)` is
rewritten to `X` with a reference-type filter `T`, because FHIRPath `resolve()` needs the database.
Composite parameters go into `composites`: their base element path and, per component, the component's
type (from the parameter its definition names) and its expression relative to that element
(`service.search.composite` indexes and queries them). Special parameters are skipped (not supported).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir-r4-spec"

# Modifiers we support, by parameter type (the definitions themselves list none for R4).
MODIFIERS = {
    "string": ["exact", "contains", "missing"],
    "token": ["not", "text", "missing", "of-type"],
    "reference": ["missing", "identifier", "[type]"],
    "date": ["missing"],
    "number": ["missing"],
    "quantity": ["missing"],
    "uri": ["below", "above", "missing"],
}
SUPPORTED_TYPES = set(MODIFIERS)
RESOLVE = re.compile(r"^\(?\s*(.*?)\.where\(resolve\(\) is (\w+)\)\s*\)?$")


def split_top(expr: str) -> list[str]:
    """Split on '|' outside parentheses and quotes."""
    parts, depth, quote, cur = [], 0, False, []
    for ch in expr:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not quote:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def expressions_for(expr: str, base: str) -> list[list[str | None]]:
    out: list[list[str | None]] = []
    for part in split_top(expr):
        bare = part.lstrip("(").strip()
        if not (bare == base or bare.startswith((base + ".", "Resource.", "DomainResource."))):
            continue
        m = RESOLVE.match(part)
        if m:
            out.append([m.group(1).strip().lstrip("("), m.group(2)])
        else:
            out.append([part, None])
    return out


def build_params(spec: Path) -> dict:
    bundle = json.loads((spec / "search-parameters.json").read_text())
    params: dict[str, dict[str, list]] = {}
    targets: list[list[str]] = []
    target_index: dict[tuple[str, ...], int] = {}
    for entry in bundle["entry"]:
        sp = entry["resource"]
        ptype, expr = sp["type"], sp.get("expression")
        if ptype not in SUPPORTED_TYPES or not expr:
            continue
        tkey = tuple(sorted(sp.get("target", [])))
        if tkey not in target_index:
            target_index[tkey] = len(targets)
            targets.append(list(tkey))
        for base in sp["base"]:
            exprs = expressions_for(expr, base)
            if not exprs:
                continue
            # [type, [[expression, resolve-type-or-null], ...], target-list index, SearchParameter id]
            params.setdefault(base, {})[sp["code"]] = [ptype, exprs, target_index[tkey], sp["id"]]
    return {"modifiers": MODIFIERS, "targets": targets,
            "params": {k: dict(sorted(v.items())) for k, v in sorted(params.items())},
            "composites": build_composites(bundle)}


def build_composites(bundle: dict) -> dict:
    """{type: {code: [[base element path, ...], [[component type, expression], ...], SearchParameter id]}}."""
    by_url = {e["resource"]["url"]: e["resource"] for e in bundle["entry"]}
    out: dict[str, dict[str, list]] = {}
    for entry in bundle["entry"]:
        sp = entry["resource"]
        if sp["type"] != "composite" or not sp.get("expression") or not sp.get("component"):
            continue
        parts = []
        for comp in sp["component"]:
            ctype = by_url.get(comp["definition"], {}).get("type")
            if ctype not in SUPPORTED_TYPES:
                break
            parts.append([ctype, comp["expression"]])
        else:
            for base in sp["base"]:
                bases = [p for p in split_top(sp["expression"]) if p == base or p.startswith(base + ".")]
                if bases:
                    out.setdefault(base, {})[sp["code"]] = [bases, parts, sp["id"]]
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def build_compartment(spec: Path) -> dict:
    comp = json.loads((spec / "CompartmentDefinition-patient.json").read_text())
    return {r["code"]: r["param"] for r in comp["resource"] if r.get("param")}


def build_summary() -> dict:
    from service.fhir.types import RESOURCE_TYPES

    out: dict[str, list[str]] = {}
    for rtype in sorted(RESOURCE_TYPES):
        try:
            mod = importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}")
            model = getattr(mod, rtype)
        except (ImportError, AttributeError):
            continue
        names = []
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra or {}
            if isinstance(extra, dict) and extra.get("summary_element_property"):
                names.append(field.alias or name)
        out[rtype] = sorted(set(names))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    args = ap.parse_args(argv)
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    for name, obj in (("search_parameters.json", build_params(args.spec)),
                      ("compartment_patient.json", build_compartment(args.spec)),
                      ("summary_elements.json", build_summary())):
        (data / name).write_text(json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n")
        print(f"wrote {data / name} ({(data / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
