"""$validate at type and instance level (service/operations/validate.py), on both databases: an
OperationOutcome answers, every mode is tried as the caller would write, and nothing is ever stored."""

from __future__ import annotations

from tests.api.support import FHIR, all_versions, assert_outcome

HEADERS = {"Content-Type": FHIR}
MISSING = "00000000-0000-4000-8000-000000000000"


def _params(resource=None, mode=None, profile=None):  # type: ignore[no-untyped-def]
    parts = []
    if resource is not None:
        parts.append({"name": "resource", "resource": resource})
    if mode is not None:
        parts.append({"name": "mode", "valueCode": mode})
    if profile is not None:
        parts.append({"name": "profile", "valueUri": profile})
    return {"resourceType": "Parameters", "parameter": parts}


def _errors(r):  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return [i for i in body["issue"] if i["severity"] in ("error", "fatal")]


def test_a_valid_resource_validates_and_nothing_is_stored(client):
    for body in ({"resourceType": "Patient", "gender": "female"},
                 _params({"resourceType": "Patient", "gender": "female"}),
                 _params({"resourceType": "Patient", "gender": "female"}, mode="create")):
        r = client.post("/fhir/Patient/$validate", json=body, headers=HEADERS)
        assert _errors(r) == []
        assert r.json()["issue"][0]["severity"] == "information"
    assert all_versions(client) == []


def test_an_invalid_resource_gets_its_issues_with_paths_and_nothing_is_stored(client):
    bad = {"resourceType": "Patient", "gender": "xyz", "name": [], "birthDate": "1990-13-01"}
    r = client.post("/fhir/Patient/$validate", json=bad, headers=HEADERS)
    errors = _errors(r)
    paths = {e for i in errors for e in i.get("expression", [])}
    assert {"Patient.gender", "Patient.name", "Patient.birthDate"} <= paths, errors
    assert any("administrative-gender" in i["diagnostics"] for i in errors)
    r = client.post("/fhir/Observation/$validate", json={"resourceType": "Observation", "status": "final",
                                                          "code": {"text": "x"},
                                                          "subject": {"reference": f"Patient/{MISSING}"}},
                    headers=HEADERS)
    assert [i["expression"] for i in _errors(r)] == [["Observation.subject.reference"]]
    assert all_versions(client) == []


def test_mode_update_and_delete_are_tried_as_the_write_and_rolled_back(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=HEADERS)
    pid = r.json()["id"]
    ok = client.post(f"/fhir/Patient/{pid}/$validate",
                     json=_params({"resourceType": "Patient", "id": pid, "gender": "male"}, mode="update"),
                     headers=HEADERS)
    assert _errors(ok) == []
    wrong_id = client.post(f"/fhir/Patient/{pid}/$validate",
                           json=_params({"resourceType": "Patient", "id": "other", "gender": "male"}, mode="update"),
                           headers=HEADERS)
    assert [i["expression"] for i in _errors(wrong_id)] == [["Patient.id"]]
    invalid = client.post(f"/fhir/Patient/{pid}/$validate",
                          json=_params({"resourceType": "Patient", "id": pid, "gender": "nope"}, mode="update"),
                          headers=HEADERS)
    assert [i["expression"] for i in _errors(invalid)] == [["Patient.gender"]]
    delete = client.post(f"/fhir/Patient/{pid}/$validate", params={"mode": "delete"}, headers=HEADERS)
    assert _errors(delete) == []
    back = client.get(f"/fhir/Patient/{pid}")
    assert back.status_code == 200 and back.json()["meta"]["versionId"] == "1" and back.json()["gender"] == "female"
    assert [k for k, _ in all_versions(client)] == [f"Patient/{pid}"]


def test_a_profile_the_server_does_not_know_is_an_error_issue(client):
    patient = {"resourceType": "Patient", "gender": "female"}
    base = client.post("/fhir/Patient/$validate", headers=HEADERS,
                       json=_params(patient, profile="http://hl7.org/fhir/StructureDefinition/Patient"))
    assert _errors(base) == []
    other = client.post("/fhir/Patient/$validate", headers=HEADERS,
                        json=_params(patient, profile="https://example.org/StructureDefinition/unknown"))
    errors = _errors(other)
    assert errors[0]["code"] == "not-supported" and "unknown" in errors[0]["diagnostics"]


def test_malformed_requests_are_400s(client):
    assert_outcome(client.post("/fhir/Patient/$validate", json=_params(), headers=HEADERS), 400, "resource")
    assert_outcome(client.post("/fhir/Patient/$validate", json=_params({"resourceType": "Patient"}, mode="merge"),
                               headers=HEADERS), 400, "mode")
    assert_outcome(client.post("/fhir/Patient/$validate", json={"resourceType": "Observation", "status": "final",
                                                                "code": {"text": "x"}}, headers=HEADERS),
                   400, "resourceType")
    assert_outcome(client.post("/fhir/Patient/$validate", json=_params({"resourceType": "Patient"}, mode="update"),
                               headers=HEADERS), 400, "id")
    assert client.get("/fhir/Patient/$validate").status_code == 405


def test_a_caller_refused_the_write_is_refused_the_validation_alike(demo, client, auth_headers):
    patient = auth_headers("patient.pat", patient="pat-pat", scope="patient/*.rs")
    body = _params({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                    "subject": {"reference": "Patient/pat-pat"}}, mode="create")
    r = client.post("/fhir/Observation/$validate", json=body, headers={**patient, **HEADERS})
    direct = client.post("/fhir/Observation", json=body["parameter"][0]["resource"], headers={**patient, **HEADERS})
    assert r.status_code == direct.status_code == 403
