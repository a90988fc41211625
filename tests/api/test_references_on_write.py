"""Local references must resolve on write (service/validation/references.py), on both databases: create,
update and transaction entries; a transaction resolves references among its own entries in any order; a
hidden resource resolves exactly as a visible one; SHAREDCARE_REFERENCES_LENIENT=1 relaxes the rule."""

from __future__ import annotations

from tests.api.support import FHIR, all_versions, assert_outcome
from tests.policy.support import observation

HEADERS = {"Content-Type": FHIR}
MISSING = "00000000-0000-4000-8000-000000000000"


def _obs(subject: str, **extra):  # type: ignore[no-untyped-def]
    return {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
            "subject": {"reference": subject}, **extra}


def _patient(client) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=HEADERS)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_a_reference_to_nothing_is_refused_naming_the_element(client):
    r = client.post("/fhir/Observation", json=_obs(f"Patient/{MISSING}"), headers=HEADERS)
    body = assert_outcome(r, 422, "Observation.subject.reference", f"Patient/{MISSING}", "does not resolve",
                          "SHAREDCARE_REFERENCES_LENIENT")
    assert body["issue"][0]["expression"] == ["Observation.subject.reference"]
    assert all_versions(client) == []


def test_references_that_resolve_are_accepted_in_every_local_form(client):
    pid = _patient(client)
    for ref in (f"Patient/{pid}", f"http://testserver/fhir/Patient/{pid}", f"Patient/{pid}/_history/1"):
        r = client.post("/fhir/Observation", json=_obs(ref), headers=HEADERS)
        assert r.status_code == 201, (ref, r.text)
    # what is not a local reference is not checked: contained, other servers, logical references
    for extra in ({"subject": {"reference": "https://elsewhere.example.org/fhir/Patient/1"}},
                  {"subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}}},
                  {"contained": [{"resourceType": "Patient", "id": "p1", "gender": "male"}],
                   "subject": {"reference": "#p1"}}):
        r = client.post("/fhir/Observation", json={**_obs("x"), **extra}, headers=HEADERS)
        assert r.status_code == 201, (extra, r.text)


def test_nested_and_absolute_references_are_checked_and_deleted_ones_do_not_resolve(client):
    pid = _patient(client)
    r = client.post("/fhir/Observation", json=_obs(f"Patient/{pid}", performer=[
        {"reference": f"Practitioner/{MISSING}"}]), headers=HEADERS)
    assert_outcome(r, 422, "Observation.performer[0].reference")
    r = client.post("/fhir/Observation", json=_obs(f"http://testserver/fhir/Patient/{MISSING}"), headers=HEADERS)
    assert_outcome(r, 422, "Observation.subject.reference")
    gone = _patient(client)
    assert client.delete(f"/fhir/Patient/{gone}").status_code in (200, 204)
    r = client.post("/fhir/Observation", json=_obs(f"Patient/{gone}"), headers=HEADERS)
    assert_outcome(r, 422, "Observation.subject.reference", "does not resolve")


def test_an_update_is_checked_too(client):
    pid = _patient(client)
    r = client.post("/fhir/Observation", json=_obs(f"Patient/{pid}"), headers=HEADERS)
    oid = r.json()["id"]
    r = client.put(f"/fhir/Observation/{oid}", json={**_obs(f"Patient/{MISSING}"), "id": oid}, headers=HEADERS)
    assert_outcome(r, 422, "Observation.subject.reference")
    assert client.get(f"/fhir/Observation/{oid}").json()["meta"]["versionId"] == "1"


def test_a_transaction_resolves_references_among_its_entries_in_any_order(client):
    patient_url = "urn:uuid:7d2b3c9e-2f0e-4c41-8d51-0c7c2d1f0a11"
    obs_url = "urn:uuid:7d2b3c9e-2f0e-4c41-8d51-0c7c2d1f0a12"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        # the Observation comes first and refers to the Patient after it, and to an Observation after that
        {"fullUrl": "urn:uuid:7d2b3c9e-2f0e-4c41-8d51-0c7c2d1f0a13",
         "resource": _obs(patient_url, derivedFrom=[{"reference": obs_url}]),
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": obs_url, "resource": _obs(patient_url), "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = client.post("/fhir", json=bundle, headers=HEADERS)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "201", "201"]


def test_a_transaction_with_one_dangling_reference_writes_nothing(client):
    patient_url = "urn:uuid:7d2b3c9e-2f0e-4c41-8d51-0c7c2d1f0a21"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": _obs(patient_url), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs(patient_url, performer=[{"reference": f"Practitioner/{MISSING}"}]),
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = client.post("/fhir", json=bundle, headers=HEADERS)
    assert_outcome(r, 422, "Observation.performer[0].reference", f"Practitioner/{MISSING}", "in this transaction")
    assert all_versions(client) == []


def test_a_batch_entry_is_checked_on_its_own(client):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": _obs(f"Patient/{MISSING}"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
    ]}
    r = client.post("/fhir", json=bundle, headers=HEADERS)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses == ["422", "201"], r.text


def test_a_hidden_resource_resolves_exactly_as_a_visible_one(demo, client, auth_headers):
    """Nurse Nina may not see Paula's record. A reference from his own patient's Observation to Paula's hidden
    Observation is answered as one to a visible Observation (201), never differently; a 422 means only that
    no such resource exists on the server."""
    ada, nina = auth_headers(), auth_headers("nurse.nina")
    hidden = client.post("/fhir/Observation", json=observation("pat-paula", "private"), headers=ada).json()["id"]
    assert client.get(f"/fhir/Observation/{hidden}", headers=nina).status_code == 404
    visible = client.post("/fhir/Observation", json=observation("pat-pat", "shared"), headers=ada).json()["id"]
    assert client.get(f"/fhir/Observation/{visible}", headers=nina).status_code == 200
    answers = {}
    for name, rid in (("hidden", hidden), ("visible", visible), ("missing", MISSING)):
        body = {**observation("pat-pat", "mine"), "derivedFrom": [{"reference": f"Observation/{rid}"}]}
        r = client.post("/fhir/Observation", json=body, headers={**nina, **HEADERS})
        answers[name] = r.status_code
        if r.status_code == 422:
            assert "hidden" not in r.text and "permission" not in r.text and "see" not in r.text.lower().split()
    assert answers == {"hidden": 201, "visible": 201, "missing": 422}, answers


def test_the_lenient_switch_stores_dangling_references_as_sent(client, lenient_references):
    r = client.post("/fhir/Observation", json=_obs(f"Patient/{MISSING}"), headers=HEADERS)
    assert r.status_code == 201, r.text
    assert r.json()["subject"]["reference"] == f"Patient/{MISSING}"


def test_a_stored_document_bundle_refers_among_its_entries_not_to_the_server(client):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "http://example.org/fhir/Observation/o1",
         "resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/p1"}}}]}
    r = client.post("/fhir/Bundle", json=bundle, headers=HEADERS)
    assert r.status_code == 201, r.text
