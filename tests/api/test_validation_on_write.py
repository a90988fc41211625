"""Validation on write through the HTTP API (both databases): every case of the invalid corpus is refused on
create, update and as a transaction entry, with an OperationOutcome naming the element and the rule, and
nothing is stored; valid resources keep being accepted."""

from __future__ import annotations

import copy

import pytest

from tests.api.support import FHIR, all_versions, assert_outcome
from tests.fhir_profiles.invalid_corpus import CASES, XHTML

HEADERS = {"Content-Type": FHIR}


def _issue_naming(body, path):
    return [i for i in body["issue"] if path in i.get("expression", [])]


def test_every_invalid_case_is_refused_on_create_naming_the_element(client):
    wrong = []
    for name, resource, path, word in CASES:
        r = client.post(f"/fhir/{resource['resourceType']}", json=copy.deepcopy(resource), headers=HEADERS)
        if r.status_code not in (400, 422):
            wrong.append(f"{name}: {r.status_code} {r.text[:200]}")
            continue
        body = assert_outcome(r, r.status_code)
        named = _issue_naming(body, path)
        if not named or not any(word.lower() in i["diagnostics"].lower() for i in named):
            wrong.append(f"{name}: does not name {path} / {word}: {r.text[:300]}")
    assert not wrong, "\n".join(wrong)
    assert all_versions(client) == []


def test_invalid_updates_are_refused_and_the_stored_version_is_kept(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=HEADERS)
    assert r.status_code == 201
    pid = r.json()["id"]
    for name, resource, path, _word in CASES:
        if resource["resourceType"] != "Patient":
            continue
        body = {**copy.deepcopy(resource), "id": pid}
        r = client.put(f"/fhir/Patient/{pid}", json=body, headers=HEADERS)
        assert r.status_code in (400, 422), (name, r.text)
        assert _issue_naming(r.json(), path), (name, r.text)
    back = client.get(f"/fhir/Patient/{pid}").json()
    assert back["meta"]["versionId"] == "1" and back["gender"] == "female"


def test_an_invalid_transaction_entry_rolls_back_the_whole_transaction(client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b5a0f64-1b7c-4a53-9d4c-3d0b5c0e0a01",
         "resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                      "subject": {"reference": "urn:uuid:0b5a0f64-1b7c-4a53-9d4c-3d0b5c0e0a01"},
                      "effectivePeriod": {"start": "2024-02-02", "end": "2024-02-01"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = client.post("/fhir", json=bundle, headers=HEADERS)
    body = assert_outcome(r, 422, "per-1", "Bundle.entry[1]")
    assert any("Observation.effectivePeriod" in i.get("expression", []) for i in body["issue"]), body
    assert all_versions(client) == []


def test_the_required_binding_is_named_with_its_valueset(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "xyz"}, headers=HEADERS)
    body = assert_outcome(r, 422, "Patient.gender", "http://hl7.org/fhir/ValueSet/administrative-gender")
    assert body["issue"][0]["expression"] == ["Patient.gender"]
    assert body["issue"][0]["code"] == "code-invalid"


@pytest.mark.parametrize("resource", [
    {"resourceType": "Patient", "gender": "other", "active": True, "birthDate": "1970",
     "text": {"status": "generated", "div": f'<div {XHTML}><p>Jo <b>Bloggs</b></p></div>'},
     "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}]},
    {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
     "period": {"start": "2024-05-01", "end": "2024-05-01T10:00:00Z"}},
    {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1.50},
     "effectivePeriod": {"start": "2024-05-01T10:00:00+02:00", "end": "2024-05-01T09:00:00Z"}},
])
def test_valid_resources_are_still_accepted(client, resource):
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=HEADERS)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("bad", ["x" * 65, "bad_id", "a%20b"])
def test_a_bad_id_in_the_url_or_body_is_refused_naming_it(client, bad):
    r = client.put(f"/fhir/Patient/{bad}", json={"resourceType": "Patient", "id": bad.replace("%20", " ")},
                   headers=HEADERS)
    assert r.status_code in (400, 404, 422), r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    body = client.post("/fhir/Patient/$validate", headers=HEADERS,
                       json={"resourceType": "Parameters", "parameter": [
                           {"name": "resource", "resource": {"resourceType": "Patient", "id": bad}}]}).json()
    assert any("Patient.id" in i.get("expression", []) for i in body["issue"]), body
    assert all_versions(client) == []
