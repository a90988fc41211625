"""`GET /fhir/Patient/{id}/$access-log`: who has looked at my record, with staff names and organisations."""

from __future__ import annotations

from typing import Any

from tests.audit.support import as_user, patient, staff_context


def _parts(access: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in access["part"]:
        value = next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _log(client: Any, pid: str, **params: str) -> list[dict[str, Any]]:
    r = client.get(f"/fhir/Patient/{pid}/$access-log", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    return [_parts(p) for p in body["parameter"] if p["name"] == "access"]


def test_the_access_log_names_staff_their_role_organisation_purpose_and_break_glass(client, services):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    other = client.post("/fhir/Patient", json=patient(gender="male")).json()["id"]
    prac = client.put("/fhir/Practitioner/nurse-jo", json={
        "resourceType": "Practitioner", "id": "nurse-jo", "name": [{"given": ["Jo"], "family": "Bloggs"}]}).json()
    org = client.put("/fhir/Organization/trust", json={
        "resourceType": "Organization", "id": "trust", "name": "Devon Community Trust"}).json()
    obs = client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final",
                                                 "code": {"text": "pulse"},
                                                 "subject": {"reference": f"Patient/{pid}"}}).json()
    nurse = staff_context(practitioner=f"Practitioner/{prac['id']}", organisation=f"Organization/{org['id']}")
    assert as_user(services, nurse, "GET", f"Patient/{pid}").status == 200
    assert as_user(services, nurse, "GET", f"Observation/{obs['id']}").status == 200
    assert as_user(services, nurse, "GET", f"Patient/{other}").status == 200  # someone else's record
    btg = staff_context(practitioner=f"Practitioner/{prac['id']}", organisation=f"Organization/{org['id']}",
                        purpose=("BTG",), reason="Emergency admission")
    assert as_user(services, btg, "GET", f"Patient/{pid}").status == 200

    log = _log(client, pid)
    staff = [a for a in log if a["who"] == "Jo Bloggs"]
    assert len(staff) == 3  # the other patient's read is not in this patient's log
    newest = staff[0]
    assert newest["organisation"] == "Devon Community Trust"
    assert newest["role"] == "Nurse"
    assert newest["interaction"] == "read" and newest["resourceType"] == "Patient"
    assert newest["purpose"] == "BTG" and newest["breakGlass"] is True
    assert newest["reason"] == "Emergency admission"  # the person sees why
    assert all("reason" not in a for a in staff[1:])
    assert newest["whoReference"] == {"reference": "Practitioner/nurse-jo", "display": "Jo Bloggs"}
    assert newest["organisationReference"] == {"reference": "Organization/trust"}
    assert [(a["resourceType"], a["breakGlass"], a["purpose"]) for a in staff[1:]] == [
        ("Observation", False, "TREAT"), ("Patient", False, "TREAT")]
    whens = [a["when"] for a in log]
    assert whens == sorted(whens, reverse=True)
    assert all(a["event"]["reference"].startswith("AuditEvent/") for a in log)
    assert len(_log(client, pid, _count="2")) == 2


def test_access_log_of_an_unknown_patient_is_404_and_is_itself_audited(client, services):
    r = client.get("/fhir/Patient/nobody/$access-log")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    from tests.audit.support import events, subtype

    ev = events(client)[-1]
    assert subtype(ev) == "operation" and ev["subtype"][1]["code"] == "access-log" and ev["outcome"] == "4"


def test_access_log_rejects_a_bad_count(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.get(f"/fhir/Patient/{pid}/$access-log?_count=lots")
    assert r.status_code == 400 and "_count" in r.json()["issue"][0]["diagnostics"]
