"""Every interaction writes exactly one AuditEvent with the right content (IHE BALP shape), on both databases."""

from __future__ import annotations

import base64

from sqlalchemy import text

from service.fhir.validation import validate_resource
from tests.audit.support import agent, entity_refs, events, patient, patients, subtype


def test_n_requests_give_n_events_with_the_right_subtype_outcome_and_patient(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "subject": {"reference": f"Patient/{pid}"}}
    oid = client.post("/fhir/Observation", json=obs).json()["id"]
    steps = [
        (client.get(f"/fhir/Patient/{pid}"), "read", "R", "0"),
        (client.get(f"/fhir/Observation/{oid}"), "read", "R", "0"),
        (client.get(f"/fhir/Patient/{pid}/_history/1"), "vread", "R", "0"),
        (client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="male")), "update", "U", "0"),
        (client.patch(f"/fhir/Observation/{oid}", content="[{\"op\":\"replace\",\"path\":\"/status\",\"value\":"
                      "\"amended\"}]", headers={"Content-Type": "application/json-patch+json",
                                                 "Prefer": "return=minimal"}), "patch", "U", "0"),
        (client.get(f"/fhir/Patient/{pid}/_history"), "history-instance", "R", "0"),
        (client.get("/fhir/Patient/does-not-exist"), "read", "R", "4"),
        (client.delete(f"/fhir/Observation/{oid}"), "delete", "D", "0"),
        (client.get(f"/fhir/Observation/{oid}"), "read", "R", "4"),
        (client.post("/fhir/Patient", json=patient(birthDate="not-a-date")), "create", "C", "4"),
    ]
    for resp, *_ in steps:
        assert resp.status_code < 500, resp.text
    trail = events(client)
    assert len(trail) == 2 + len(steps), [subtype(e) for e in trail]
    assert [subtype(e) for e in trail[:2]] == ["create", "create"]
    for ev, (resp, code, action, outcome) in zip(trail[2:], steps, strict=True):
        assert (subtype(ev), ev["action"], ev["outcome"]) == (code, action, outcome), (ev, resp.status_code)
        assert ev["type"]["code"] == "rest"
        assert ev["subtype"][0]["system"] == "http://hl7.org/fhir/restful-interaction"
    # the patient is named in every event about their data, including the Observation's (its subject), and
    # the read of the deleted Observation (410: nothing of it was returned, but it was theirs)
    for ev in trail[:8] + trail[9:11]:
        assert patients(ev) == [f"Patient/{pid}"], ev
    assert patients(trail[8]) == ["Patient/does-not-exist"]  # the record someone tried to open
    assert entity_refs(trail[3], "4") == [f"Observation/{oid}/_history/1"]
    assert entity_refs(trail[5], "4") == [f"Patient/{pid}/_history/2"]
    assert entity_refs(trail[6], "4") == [f"Observation/{oid}/_history/2"]
    assert entity_refs(trail[9], "4") == [f"Observation/{oid}/_history/3"]
    assert "does-not-exist is not known" in trail[8]["outcomeDesc"]
    assert "outcomeDesc" not in trail[2]
    assert "was deleted" in trail[10]["outcomeDesc"]
    assert "birthDate" in trail[11]["outcomeDesc"]


def test_every_event_is_valid_r4_and_has_the_balp_agents_and_request_id(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/Patient/nope")
    for ev in events(client):
        validate_resource(ev)
        user = agent(ev, "IRCP")
        assert user is not None and user["requestor"] is True and user["who"]["identifier"]["value"]
        server = agent(ev, "110152")
        assert server["requestor"] is False and server["network"] == {"address": "http://testserver/fhir",
                                                                       "type": "5"}
        assert ev["source"]["type"][0]["code"] == "4"
        assert [p["coding"][0]["code"] for p in ev["purposeOfEvent"]] == ["TREAT"]
        req_ids = [e for e in ev["entity"] if e["type"]["code"] == "XrequestId"]
        assert len(req_ids) == 1 and req_ids[0]["what"]["identifier"]["value"]


def test_a_search_is_one_event_with_the_query_and_the_patients_returned(client):
    a = client.post("/fhir/Patient", json=patient()).json()["id"]
    b = client.post("/fhir/Patient", json=patient(gender="male")).json()["id"]
    client.post("/fhir/Patient", json=patient())
    r = client.get(f"/fhir/Patient?_id={a},{b}")
    assert r.status_code == 200 and len(r.json()["entry"]) == 2
    ev = events(client)[-1]
    assert subtype(ev) == "search-type" and ev["action"] == "E" and ev["outcome"] == "0"
    assert sorted(patients(ev)) == sorted([f"Patient/{a}", f"Patient/{b}"])
    query = [e for e in ev["entity"] if e.get("role", {}).get("code") == "24"]
    assert len(query) == 1
    assert base64.b64decode(query[0]["query"]).decode() == f"_id={a}%2C{b}"
    assert query[0]["description"].startswith("GET Patient?")


def test_a_refused_write_is_audited_and_nothing_of_the_write_remains(client, services):
    r = client.post("/fhir/Patient", json=patient(birthDate="31/12/1990"))
    assert r.status_code in (400, 422)
    trail = events(client)
    assert [(subtype(e), e["outcome"]) for e in trail] == [("create", "4")]
    with services.db.read() as conn:
        n = conn.execute(text("SELECT count(*) FROM resource WHERE res_type = 'Patient'")).scalar_one()
    assert n == 0


def test_unknown_paths_and_methods_are_audited_as_failures(client):
    assert client.get("/fhir/NoSuchType/1").status_code == 404
    assert client.post("/fhir/metadata", json={}).status_code == 405
    trail = events(client)
    assert [e["outcome"] for e in trail] == ["4", "4"]
    assert "NoSuchType" in trail[0]["outcomeDesc"] and "POST is not allowed" in trail[1]["outcomeDesc"]


def test_a_read_whose_audit_cannot_be_written_fails_and_returns_no_data(client, services):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    with services.db.write() as conn:
        conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    try:
        r = client.get(f"/fhir/Patient/{pid}")
    finally:
        with services.db.write() as conn:
            conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert r.status_code in (500, 503)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Smith" not in r.text
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200  # and works again once audit can be written


def test_break_glass_purpose_and_reason_are_recorded(client, services):
    from tests.audit.support import as_user, staff_context

    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    ctx = staff_context(practitioner="Practitioner/p1", organisation="Organization/o1", purpose=("BTG",),
                        reason="Unconscious in A&E, no care relationship yet")
    assert as_user(services, ctx, "GET", f"Patient/{pid}").status == 200
    ev = events(client)[-1]
    assert ev["purposeOfEvent"] == [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                 "code": "BTG"}],
                                     "text": "Unconscious in A&E, no care relationship yet"}]
    user = agent(ev, "IRCP")
    assert user["who"]["reference"] == "Practitioner/p1" and user["altId"] == "nurse.jo"
    assert user["role"][0]["coding"][0] == {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName",
                                            "code": "R8001", "display": "Nurse"}
    org = agent(ev, "PROV")
    assert org["who"] == {"reference": "Organization/o1",
                          "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RX1"}}
    client_agent = agent(ev, "110153")
    assert client_agent["who"]["identifier"]["value"] == "web-portal"
    assert client_agent["network"] == {"address": "10.1.2.3", "type": "2"}


def test_when_the_database_cannot_take_audit_rows_they_are_spooled_and_written_later(services, tmp_path):
    """A request that fails because the database is away is still audited: its row goes to a local spool
    file, and into the database once it answers again (without duplicates)."""
    from service.access.record import RequestRecord
    from service.audit.log import AuditLog
    from service.audit.rows import access_row
    from service.db import Database
    from tests.audit.support import staff_context

    away = Database(url="postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=1")
    log = AuditLog(away, tmp_path / "spool")
    record = RequestRecord(interaction="read")
    ctx = staff_context(practitioner="Practitioner/p1", organisation="Organization/o1")
    row = access_row(ctx, record, method="GET", path="Patient/spooled", params=[], status=503,
                     body=b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}',
                     headers={})
    log.commit([row])  # returns: the row is durable in the spool
    assert len(list((tmp_path / "spool").glob("*.jsonl"))) == 1
    back = AuditLog(services.db, tmp_path / "spool")
    assert back.spool.flush(services.db) == 1
    assert back.spool.flush(services.db) == 0 and not list((tmp_path / "spool").iterdir())
    with services.db.read() as conn:
        found = conn.execute(text("SELECT target, outcome FROM audit_log WHERE request_id = :r"),
                             {"r": ctx.request_id}).all()
    assert [tuple(f) for f in found] == [("Patient/spooled", 8)]
    away.dispose()
