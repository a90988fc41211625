"""Generate service/data/patient_compartment.json from the FHIR R4 Patient CompartmentDefinition and
the search parameters' expressions: {type: [element paths that may reference the patient]}.

Run once when the spec data changes: .venv/bin/python scripts/gen_patient_compartment.py /work/shared/data/fhir-r4-spec
"""

import json
import re
import sys
from pathlib import Path

spec = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/fhir-r4-spec")
comp = json.loads((spec / "CompartmentDefinition-patient.json").read_text())
bundle = json.loads((spec / "search-parameters.json").read_text())
expr: dict[tuple[str, str], str] = {}
for e in bundle["entry"]:
    r = e["resource"]
    for base in r.get("base", []):
        if r.get("expression"):
            expr[(base, r["code"])] = r["expression"]
out: dict[str, list[str]] = {}
for entry in comp["resource"]:
    rtype = entry["code"]
    paths: set[str] = set()
    for param in entry.get("param", []):
        text = expr.get((rtype, param))
        if text is None:
            raise SystemExit(f"no expression for {rtype}.{param}")
        for part in text.split("|"):
            part = part.strip()
            if not part.startswith(rtype + "."):
                continue
            part = part[len(rtype) + 1:]
            part = re.sub(r"\.where\(resolve\(\) is \w+\)", "", part)
            part = re.sub(r"\.as\(\w+\)", "", part)
            if "(" in part:
                raise SystemExit(f"cannot simplify {rtype}.{param}: {part}")
            paths.add(part)
    if paths:
        out[rtype] = sorted(paths)
target = Path(__file__).resolve().parent.parent / "service" / "data" / "patient_compartment.json"
target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
print(f"{len(out)} types -> {target}")
