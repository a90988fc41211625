"""Correctness oracle: over the official R4 examples and a generated population, what the API returns
equals what evaluating each SearchParameter's FHIRPath expression (from the official definitions, with
fhirpathpy, independently of the indexer) says should match, for every parameter type and modifier."""

from __future__ import annotations

import json
import random
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from tests.conftest import DATA

SPEC = DATA / "fhir-r4-spec"

# (type, parameter) pairs the oracle checks: every parameter type, across the held resource types
CHECKS = {
    "Patient": ["name", "family", "given", "gender", "identifier", "birthdate", "organization", "active",
                "general-practitioner", "address-city", "phone"],
    "CarePlan": ["status", "intent", "subject", "patient", "date", "category", "instantiates-canonical"],
    "Observation": ["code", "value-quantity", "date", "subject", "status"],
    "RiskAssessment": ["probability", "subject"],
    "ServiceRequest": ["authored", "code", "status", "requester", "subject"],
    "Task": ["status", "owner", "authored-on", "priority", "focus"],
    "Questionnaire": ["url", "name", "status", "code"],
    "Organization": ["name", "identifier", "type"],
    "Practitioner": ["name", "identifier", "gender"],
    "Consent": ["patient", "date", "status", "category"],
    "AuditEvent": ["date", "type", "agent", "entity"],
    "Provenance": ["target", "recorded", "agent"],
    "Goal": ["lifecycle-status", "subject"],
    "RelatedPerson": ["patient", "name", "relationship"],
}


def _definitions() -> dict[tuple[str, str], tuple[str, str]]:
    bundle = json.loads((SPEC / "search-parameters.json").read_text())
    out = {}
    for e in bundle["entry"]:
        sp = e["resource"]
        for base in sp["base"]:
            out[(base, sp["code"])] = (sp["type"], sp.get("expression") or "")
    return out


DEFS = _definitions()


def fp_values(rtype: str, code: str, res: dict[str, Any]) -> list[Any]:
    """Evaluate the official expression: the parts for this type; resolve() as a reference-type check."""
    _, expr = DEFS[(rtype, code)]
    out: list[Any] = []
    for part in expr.split(" | "):
        part = part.strip()
        if not part.lstrip("(").startswith(rtype + "."):
            continue
        want = None
        if ".where(resolve() is " in part:
            part, want = part.split(".where(resolve() is ")
            want = want.rstrip(") ")
            part = part.lstrip("(")
        for v in evaluate(res, part, {}, models["r4"]):
            if want is not None:
                ref = v.get("reference", "") if isinstance(v, dict) else ""
                if not ref.startswith(want + "/"):
                    continue
            out.append(v)
    return out


def norm(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c)).casefold()


def strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        out = []
        for k, x in v.items():
            if k in ("use", "id", "extension", "period", "type"):
                continue
            out += [x] if isinstance(x, str) else [y for y in x if isinstance(y, str)] if isinstance(x, list) else []
        return out
    return []


def tokens(v: Any) -> list[tuple[str, str, str]]:
    """(system, code, text) triples."""
    if isinstance(v, bool):
        return [("", str(v).lower(), "")]
    if isinstance(v, (str, int)):
        return [("", str(v), "")]
    if not isinstance(v, dict):
        return []
    if "coding" in v or ("text" in v and "code" not in v and "value" not in v):
        out = [(c.get("system", ""), c.get("code", ""), c.get("display", "")) for c in v.get("coding", [])]
        return out + ([("", "", v["text"])] if v.get("text") else [])
    if "code" in v:
        return [(v.get("system", ""), v["code"], v.get("display", ""))]
    if "value" in v:
        return [(v.get("system", ""), str(v["value"]), "")]
    return []


def refs(v: Any) -> list[str]:
    if isinstance(v, dict) and isinstance(v.get("reference"), str):
        return [v["reference"]]
    if isinstance(v, str):
        return [v]
    return []


def rng(s: str) -> tuple[datetime, datetime] | None:
    """Independent precision range: [start, end) of a FHIR date/dateTime."""
    try:
        if len(s) == 4:
            a = datetime(int(s), 1, 1, tzinfo=UTC)
            return a, a.replace(year=a.year + 1)
        if len(s) == 7:
            a = datetime(int(s[:4]), int(s[5:7]), 1, tzinfo=UTC)
            b = (a + timedelta(days=32)).replace(day=1)
            return a, b
        if len(s) == 10:
            a = datetime.fromisoformat(s + 'T00:00:00+00:00')
            return a, a + timedelta(days=1)
        a = datetime.fromisoformat(s)
        if a.tzinfo is None:
            a = a.replace(tzinfo=UTC)
        frac = s.split(".")[1] if "." in s[19:] or "." in s else ""
        digits = len("".join(ch for ch in frac if ch.isdigit()))
        step = timedelta(microseconds=10 ** max(0, 6 - digits)) if digits else (
            timedelta(seconds=1) if len(s) >= 19 else timedelta(minutes=1))
        return a, a + step
    except ValueError:
        return None


def date_ranges(v: Any) -> list[tuple[datetime, datetime]]:
    lo, hi = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    if isinstance(v, str):
        r = rng(v)
        return [r] if r else []
    if isinstance(v, dict) and ("start" in v or "end" in v):
        a = rng(v["start"]) if "start" in v else None
        b = rng(v["end"]) if "end" in v else None
        return [(a[0] if a else lo, b[1] if b else hi)]
    return []


def date_match(prefix: str, target: tuple[datetime, datetime], search: tuple[datetime, datetime]) -> bool:
    (tl, th), (sl, sh) = target, search  # half-open [l, h)
    contained = tl >= sl and th <= sh
    return {"eq": contained, "ne": not contained, "gt": th > sh, "lt": tl < sl, "ge": th > sh or contained,
            "le": tl < sl or contained, "sa": tl >= sh, "eb": th <= sl}[prefix]


def number_match(prefix: str, value: Decimal, q: str) -> bool:
    d = Decimal(q)
    half = Decimal(5) * Decimal(10) ** (d.as_tuple().exponent - 1)  # type: ignore[operator]
    return {"eq": d - half <= value < d + half, "gt": value > d, "lt": value < d, "ge": value >= d,
            "le": value <= d, "ne": not (d - half <= value < d + half)}[prefix]


# -- the population --------------------------------------------------------------------------------

def population(seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    families = ["Smith", "Smyth", "Ñúñez", "O'Brien", "Zoë", "Müller", "Jones"]
    for i in range(24):
        pid = f"gen-p{i}"
        birth = rnd.choice(["1950", "1950-03", "1950-03-04", "1980-12-31", "2001-07-15", "1999"])
        out.append({"resourceType": "Patient", "id": pid, "gender": rnd.choice(["male", "female", "other"]),
                    "active": rnd.choice([True, False]), "birthDate": birth,
                    "name": [{"family": rnd.choice(families), "given": [rnd.choice(["Ann", "Bob", "Éva"])]}],
                    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"90000000{i:02d}"}],
                    "address": [{"city": rnd.choice(["Leeds", "Léon", "York"])}],
                    "telecom": [{"system": "phone", "value": f"0113 {i:04d}"}],
                    **({"managingOrganization": {"reference": "Organization/f001"}} if i % 3 else {})})
        for j in range(2):
            start = rnd.choice(["2023-01-01", "2024-02-10", "2024-02", "2025"])
            period = {"start": start} if rnd.random() < 0.4 else {"start": start, "end": "2025-06-30T12:00:00Z"}
            out.append({"resourceType": "CarePlan", "id": f"gen-cp{i}-{j}", "intent": "plan",
                        "status": rnd.choice(["active", "completed", "draft"]),
                        "subject": {"reference": f"Patient/{pid}"}, "period": period,
                        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000",
                                                  "display": "Care plan"}], "text": "Joint care plan"}],
                        "instantiatesCanonical": [f"https://example.org/PlanDefinition/{rnd.choice(['a', 'b'])}"]})
            out.append({"resourceType": "Observation", "id": f"gen-o{i}-{j}", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org",
                                             "code": rnd.choice(["29463-7", "8302-2"])}]},
                        "subject": {"reference": f"Patient/{pid}"},
                        "effectiveDateTime": rnd.choice(["2024-02-01T10:00:00Z", "2024-02-01", "2023-11-05T08:30:00Z"]),
                        "valueQuantity": {"value": rnd.choice([60, 70.5, 70.4, 99.99, 100]), "unit": "kg",
                                          "system": "http://unitsofmeasure.org", "code": "kg"}})
        out.append({"resourceType": "RiskAssessment", "id": f"gen-ra{i}", "status": "final",
                    "subject": {"reference": f"Patient/{pid}"},
                    "prediction": [{"probabilityDecimal": rnd.choice([0.02, 0.5, 0.55, 0.9])}]})
    return out


def load(client) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    stored = []
    examples = [json.loads(p.read_text()) for p in sorted((SPEC / "examples").glob("*.json"))]
    for res in examples + population():
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
        if r.status_code in (200, 201):
            stored.append(r.json())
    return stored


def queries(rtype: str, code: str, resources: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(modifier-suffixed key, value, predicate over a resource) triples."""
    ptype, _ = DEFS[(rtype, code)]
    vals = [v for r in resources for v in fp_values(rtype, code, r)]
    rnd = random.Random(f"{rtype}.{code}")
    out: list[tuple[str, str, Any]] = []

    def pick(xs: list[Any], n: int = 3) -> list[Any]:
        xs = sorted(set(xs), key=str)
        return rnd.sample(xs, min(n, len(xs)))

    def has(pred: Any) -> Any:
        return lambda r: any(pred(v) for v in fp_values(rtype, code, r))

    if ptype == "string":
        for s in pick([s for v in vals for s in strings(v) if s.strip()]):
            q = s[:3]
            out.append((code, q, has(lambda v, q=q: any(norm(x).startswith(norm(q)) for x in strings(v)))))
            out.append((code + ":exact", s, has(lambda v, s=s: s in strings(v))))
            q2 = s[1:4]
            if q2.strip():
                out.append((code + ":contains", q2, has(lambda v, q=q2: any(norm(q) in norm(x) for x in strings(v)))))
    elif ptype == "token":
        toks = [t for v in vals for t in tokens(v) if t[1]]
        for system, c, _ in pick(toks):
            out.append((code, c, has(lambda v, c=c: any(t[1] == c for t in tokens(v)))))
            if system:
                out.append((code, f"{system}|{c}", has(lambda v, s=system, c=c: any(t[:2] == (s, c) for t in tokens(v)))))
            out.append((code + ":not", c, lambda r, c=c: not any(t[1] == c for v in fp_values(rtype, code, r)
                                                                 for t in tokens(v))))
        for _, _, txt in pick([t for v in vals for t in tokens(v) if t[2]], 2):
            q = txt[:4]
            out.append((code + ":text", q, has(lambda v, q=q: any(t[2] and norm(t[2]).startswith(norm(q))
                                                                for t in tokens(v)))))
    elif ptype == "reference":
        for ref in pick([x for v in vals for x in refs(v) if "/" in x and "://" not in x and x.count("/") == 1]):
            out.append((code, ref, has(lambda v, ref=ref: ref in refs(v))))
            t, i = ref.split("/")
            out.append((f"{code}:{t}", i, has(lambda v, ref=ref: ref in refs(v))))
    elif ptype == "date":
        for v in pick([x for x in vals if isinstance(x, str)] + [x["start"] for x in vals if isinstance(x, dict)
                                                                  and "start" in x]):
            for q in {v[:4], v[:10]}:
                search = rng(q)
                for prefix in ("eq", "ge", "lt", "sa", "eb", "ne", "le", "gt"):
                    out.append((code, prefix + q, has(lambda x, p=prefix, s=search: any(
                        date_match(p, t, s) for t in date_ranges(x)))))
    elif ptype in ("number", "quantity"):
        nums = [Decimal(str(v["value"] if isinstance(v, dict) else v)) for v in vals
                if isinstance(v, (int, float)) or (isinstance(v, dict) and "value" in v)]
        for n in pick(nums):
            for prefix in ("eq", "gt", "lt", "ge", "le", "ne"):
                q = str(n)
                out.append((code, prefix + q, has(lambda x, p=prefix, q=q: number_match(
                    p, Decimal(str(x["value"] if isinstance(x, dict) else x)), q))))
            if ptype == "quantity":
                out.append((code, f"{n}|http://unitsofmeasure.org|kg", has(lambda x, q=str(n): number_match(
                    "eq", Decimal(str(x["value"])), q) and x.get("code") == "kg")))
    elif ptype == "uri":
        for u in pick([v for v in vals if isinstance(v, str)]):
            out.append((code, u, has(lambda v, u=u: v == u)))
            stem = u.rsplit("/", 1)[0]
            out.append((code + ":below", stem, has(lambda v, s=stem: isinstance(v, str) and v.startswith(s))))
    out.append((code + ":missing", "true", lambda r: not fp_values(rtype, code, r)))
    return out


@pytest.mark.slow
def test_api_matches_fhirpath_oracle(client, lenient_references):  # type: ignore[no-untyped-def]
    stored = load(client)
    assert len(stored) > 150
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in stored:
        by_type.setdefault(r["resourceType"], []).append(r)
    checked, failures = 0, []
    for rtype, codes in CHECKS.items():
        resources = by_type.get(rtype, [])
        if not resources:  # e.g. AuditEvent, which only the server itself writes
            continue
        known = {r["id"] for r in resources}
        for code in codes:
            for key, value, pred in queries(rtype, code, resources):
                expected = sorted(r["id"] for r in resources if pred(r))
                body = client.get(f"/fhir/{rtype}", params={key: value, "_count": "1000"}).json()
                # only what this test loaded (the server may write its own, e.g. AuditEvent or Provenance)
                got = sorted(e["resource"]["id"] for e in body.get("entry", [])
                             if e["search"]["mode"] == "match" and e["resource"]["id"] in known)
                checked += 1
                if got != expected:
                    failures.append(f"{rtype}?{key}={value}: expected {expected}, got {got}")
    assert not failures, f"{len(failures)} of {checked} queries differ:\n" + "\n".join(failures[:30])
    assert checked > 300
