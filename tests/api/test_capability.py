"""The CapabilityStatement is generated from what is implemented, and the server does what it claims:
every claimed interaction, search parameter, include and operation is exercised for real here, and what
it does not claim (AuditEvent changes: append-only) is really refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.api.support import FHIR, assert_outcome, patient

# A valid instance of each type checked end to end (a spread of clinical, infrastructure and special types).
SAMPLES: dict[str, dict[str, Any]] = {
    "Patient": patient(),
    "Organization": {"resourceType": "Organization", "name": "Council"},
    "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}},
    "CarePlan": {"resourceType": "CarePlan", "status": "draft", "intent": "plan",
                 "subject": {"reference": "Patient/someone"}},
    "Binary": {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(b"hi").decode()},
    "Bundle": {"resourceType": "Bundle", "type": "collection"},
    "Questionnaire": {"resourceType": "Questionnaire", "status": "draft"},
    "AuditEvent": {"resourceType": "AuditEvent", "type": {"code": "110110"}, "recorded": "2024-01-01T00:00:00Z",
                   "agent": [{"who": {"display": "a partner system"}, "requestor": True}],
                   "source": {"observer": {"display": "a partner system"}}},
}
VALUES = {"token": "x", "string": "x", "reference": "x", "date": "2020", "number": "1", "quantity": "1",
          "uri": "http://example.org/x"}
STRICT = {"Prefer": "handling=strict"}


@pytest.fixture
def capability(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.get("/fhir/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR)
    body = r.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    assert body["kind"] == "instance" and "application/fhir+json" in body["format"]
    assert body["rest"][0]["mode"] == "server"
    return body


def _resources(cap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in cap["rest"][0]["resource"]}


def _exercise(client: Any, rtype: str, code: str, rid: str) -> Any:
    res = {**SAMPLES[rtype], "id": rid}
    if code == "read":
        return client.get(f"/fhir/{rtype}/{rid}")
    if code == "vread":
        return client.get(f"/fhir/{rtype}/{rid}/_history/1")
    if code == "update":
        return client.put(f"/fhir/{rtype}/{rid}", json=res)
    if code == "patch":
        return client.patch(f"/fhir/{rtype}/{rid}", content=b'[{"op": "add", "path": "/language", "value": "en"}]',
                            headers={"Content-Type": "application/json-patch+json"})
    if code == "delete":
        return client.delete(f"/fhir/{rtype}/{rid}")
    if code == "history-instance":
        return client.get(f"/fhir/{rtype}/{rid}/_history")
    if code == "history-type":
        return client.get(f"/fhir/{rtype}/_history")
    if code == "create":
        return client.post(f"/fhir/{rtype}", json=SAMPLES[rtype])
    assert code == "search-type", code
    return client.get(f"/fhir/{rtype}", headers=STRICT)


ORDER = ["create", "read", "vread", "update", "patch", "history-instance", "history-type", "search-type", "delete"]
UNCLAIMED = {"update": ("PUT", True), "patch": ("PATCH", False), "delete": ("DELETE", False)}


@pytest.mark.parametrize("rtype", sorted(SAMPLES))
def test_every_claimed_interaction_works_and_unclaimed_ones_are_refused(client, capability, rtype,
                                                                         lenient_references):
    # (the CarePlan sample names Patient/someone, who is not stored: references are not what is tested here)
    entry = _resources(capability)[rtype]
    claimed = {i["code"] for i in entry["interaction"]}
    assert {"read", "vread", "create", "search-type", "history-instance", "history-type"} <= claimed
    rid = client.post(f"/fhir/{rtype}", json=SAMPLES[rtype]).json()["id"]
    for code in ORDER:
        if code in claimed:
            r = _exercise(client, rtype, code, rid)
            assert r.status_code < 300, (rtype, code, r.text)
    for code, (method, has_body) in UNCLAIMED.items():
        if code not in claimed:
            body = {**SAMPLES[rtype], "id": rid} if has_body else None
            r = client.request(method, f"/fhir/{rtype}/{rid}", json=body)
            assert_outcome(r, 405)
    if rtype == "AuditEvent":  # append-only: the statement says so
        assert claimed.isdisjoint({"update", "patch", "delete"})
        assert entry["conditionalUpdate"] is False and entry["conditionalDelete"] == "not-supported"
        assert entry["updateCreate"] is False
        assert_outcome(client.put(f"/fhir/AuditEvent?_id={rid}", json=SAMPLES[rtype]), 405)
        assert_outcome(client.delete(f"/fhir/AuditEvent?_id={rid}"), 405)
    else:
        assert claimed >= {"update", "patch", "delete"}
        assert entry["conditionalUpdate"] is True and entry["conditionalDelete"] == "single"
        assert entry["updateCreate"] is False  # clients may not choose ids ...
        made = client.put(f"/fhir/{rtype}/client-chosen-id", json={**SAMPLES[rtype], "id": "client-chosen-id"})
        assert made.status_code == 201  # ... except administrators and data migration (admin.ada here)
        cond = client.put(f"/fhir/{rtype}?_id=client-chosen-id", json=SAMPLES[rtype])
        assert cond.status_code == 200, cond.text
        assert client.delete(f"/fhir/{rtype}?_id=client-chosen-id").status_code == 204
    assert entry["conditionalCreate"] is True
    again = client.post(f"/fhir/{rtype}", json=SAMPLES[rtype], headers={"If-None-Exist": f"_id={rid}"})
    assert again.status_code in (200, 201), again.text


@pytest.mark.parametrize("rtype", sorted(SAMPLES))
def test_every_claimed_search_parameter_and_include_is_accepted_strictly(client, capability, rtype):
    entry = _resources(capability)[rtype]
    params = entry.get("searchParam", [])
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= {p["name"] for p in params}
    refused = []
    for p in params:
        value = "ge2020" if p["type"] == "date" else VALUES.get(p["type"], "")
        if p["type"] == "composite":  # one value per component, joined by '$'
            from service.search.composite import composites_for

            value = "$".join(VALUES[t] for t, _ in composites_for(rtype)[p["name"]].components)
        r = client.get(f"/fhir/{rtype}", params={p["name"]: value}, headers=STRICT)
        if r.status_code != 200:
            refused.append(f"{p['name']} ({p['type']}): {r.status_code} {r.text[:200]}")
    for key, specs in (("_include", entry.get("searchInclude", [])), ("_revinclude", entry.get("searchRevInclude", []))):
        for spec in specs:
            r = client.get(f"/fhir/{rtype}", params={key: spec}, headers=STRICT)
            if r.status_code != 200:
                refused.append(f"{key}={spec}: {r.status_code} {r.text[:200]}")
    assert not refused, "\n".join(refused)


def test_claimed_types_are_exactly_the_types_the_router_serves(client, capability):
    from service.fhir.types import RESOURCE_TYPES

    claimed = set(_resources(capability))
    assert claimed <= RESOURCE_TYPES and len(claimed) >= 140
    assert_outcome(client.get("/fhir/NotAType"), 404, "NotAType")
    assert "NotAType" not in claimed


def test_every_claimed_operation_is_routed(client, capability, clean_services):
    operations = clean_services.operations
    claimed = [(r["type"], op["name"]) for r in capability["rest"][0]["resource"] for op in r.get("operation", [])]
    assert ("Patient", "everything") in claimed
    for rtype, name in claimed:
        assert any(operations.find(level, rtype, name) for level in ("type", "instance")), (rtype, name)
    r = client.get("/fhir/Patient/x/$no-such-operation")
    assert_outcome(r, 404, "no-such-operation", "not supported")
    unclaimed = {(t, n) for (level, t, n), _op in operations.items() if level != "system"} - set(claimed)
    assert not {(t, n) for t, n in unclaimed if t in _resources(capability)}, unclaimed


def test_claimed_system_interactions_work(client, capability):
    claimed = {i["code"] for i in capability["rest"][0]["interaction"]}
    assert claimed == {"transaction", "batch", "history-system", "search-system"}
    for kind in ("transaction", "batch"):
        r = client.post("/fhir", json={"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]})
        assert r.status_code == 200 and r.json()["type"] == f"{kind}-response", r.text
    assert client.get("/fhir/_history").json()["type"] == "history"
    assert client.get("/fhir?_type=Patient", headers=STRICT).json()["type"] == "searchset"
    assert capability["patchFormat"] == ["application/json-patch+json", "application/merge-patch+json",
                                         "application/fhir+json"]
