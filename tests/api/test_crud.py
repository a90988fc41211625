"""Create, read, vread, update, delete over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

FHIR = "application/fhir+json"


def patient(**extra):  # type: ignore[no-untyped-def]
    res = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Jo"]}], "gender": "female"}
    res.update(extra)
    return res


def test_create_returns_201_location_etag_and_last_modified(client):
    r = client.post("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert "last-modified" in r.headers
    assert r.headers["content-type"].startswith(FHIR)


def test_read_returns_what_was_stored(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    r = client.get(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["etag"] == 'W/"1"'


def test_update_with_stale_if_match_gives_412(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    rid = created["id"]
    ok = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"), headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == "2"
    stale = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{rid}").json()["gender"] == "male"


def test_vread_returns_each_version(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    assert client.get(f"/fhir/Patient/{rid}/_history/1").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{rid}/_history/2").json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{rid}/_history/3").status_code == 404


def test_delete_then_read_is_410_and_recreate_allowed(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert client.delete(f"/fhir/Patient/{rid}").status_code == 204
    assert client.get(f"/fhir/Patient/{rid}").status_code == 410
    again = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid))
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"


def test_update_as_create_with_client_id(client):
    r = client.put("/fhir/Patient/my-id-1", json=patient(id="my-id-1"))
    assert r.status_code == 201
    assert client.get("/fhir/Patient/my-id-1").status_code == 200


def test_nhs_number_with_bad_check_digit_is_rejected_and_nothing_written(client):
    bad = patient(identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}])
    r = client.post("/fhir/Patient", json=bad)
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert "modulus-11" in issue["diagnostics"]
    assert issue["expression"] == ["Patient.identifier[0].value"]
    assert client.get("/fhir/Patient/_history").json().get("entry") is None
