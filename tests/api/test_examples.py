"""Every official R4 example in the shared data round-trips: create, read back, equal apart from id and meta."""

from __future__ import annotations

import json
from typing import Any

import orjson

from tests.api.support import FHIR, all_versions, assert_outcome
from tests.conftest import DATA

EXAMPLES = DATA / "fhir-r4-spec" / "examples"
INVALID = "Questionnaire-qs1.json"
# The R4 Consent examples cannot be enforced as written (most lack a root provision type, and they name
# patients and organisations this server does not hold): the consent write rules (service/policy/
# consent_rules.py, consent-semantics.md rule 5 and C1) refuse them, naming the element.
CONSENTS = "Consent-"


OWN_NAMESPACE = "https://sharedcare.example.org/fhir/StructureDefinition/"


def _strip(res: dict[str, Any]) -> dict[str, Any]:
    """Apart from id and meta, and extensions in our own namespace that the server adds (e.g. the CarePlan
    agreement state from service.workflows); no official example uses that namespace."""
    out = {k: v for k, v in res.items() if k not in ("id", "meta")}
    ext = [e for e in out.get("extension", []) if not str(e.get("url", "")).startswith(OWN_NAMESPACE)]
    if ext:
        out["extension"] = ext
    else:
        out.pop("extension", None)
    return out


def test_every_example_round_trips(client, lenient_references):
    # (the examples name resources outside the set, e.g. Patient/example: loaded as a bulk load would be)
    files = sorted(p for p in EXAMPLES.glob("*.json") if p.name != INVALID and not p.name.startswith(CONSENTS))
    assert len(files) >= 125
    failures = []
    created: set[str] = set()
    for path in files:
        raw = path.read_bytes()
        original = json.loads(raw)
        r = client.post(f"/fhir/{original['resourceType']}", content=raw, headers={"Content-Type": FHIR})
        if r.status_code != 201:
            failures.append(f"{path.name}: {r.status_code} {r.text[:300]}")
            continue
        created.add(f"{original['resourceType']}/{r.json()['id']}")
        back = client.get(f"/fhir/{original['resourceType']}/{r.json()['id']}").json()
        if _strip(back) != _strip(original):
            failures.append(f"{path.name}: read back differs")
        if original.get("meta", {}).get("profile"):
            assert back["meta"]["profile"] == original["meta"]["profile"]
    assert not failures, "\n".join(failures)
    # Nothing else was written but what the server records itself: AuditEvents (left out by all_versions)
    # and the Provenance that service.workflows records for each CarePlan write.
    extra = {k for k, _ in all_versions(client)} - created
    assert all(k.startswith("Provenance/") for k in extra), extra


def test_the_consent_examples_are_refused_naming_what_cannot_be_enforced(client):
    files = sorted(EXAMPLES.glob(CONSENTS + "*.json"))
    assert len(files) >= 10
    for path in files:
        r = client.post("/fhir/Consent", content=path.read_bytes(), headers={"Content-Type": FHIR})
        body = assert_outcome(r, 422, "Consent.")
        assert all(i.get("expression") for i in body["issue"]), path.name
    assert client.get("/fhir/Consent", params={"_summary": "count"}).json()["total"] == 0


def test_questionnaire_qs1_is_rejected_naming_every_missing_link_id(client):
    raw = (EXAMPLES / INVALID).read_bytes()
    r = client.post("/fhir/Questionnaire", content=raw, headers={"Content-Type": FHIR})
    body = assert_outcome(r, 422, "linkId")
    expressions = [e for i in body["issue"] for e in i.get("expression", [])]
    assert expressions and all(e.startswith("Questionnaire.item[") and e.endswith(".linkId") for e in expressions)
    assert "Questionnaire.item[0].item[0].linkId" in expressions
    missing = _missing_link_ids(orjson.loads(raw))
    assert set(expressions) == set(missing)
    assert all_versions(client) == []


def _missing_link_ids(q: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(items: list[dict[str, Any]], path: str) -> None:
        for i, item in enumerate(items):
            here = f"{path}.item[{i}]"
            if "linkId" not in item:
                out.append(f"{here}.linkId")
            walk(item.get("item", []), here)

    walk(q.get("item", []), "Questionnaire")
    return out
