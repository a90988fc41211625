"""AuditEvent search through the generic search engine: patient, agent, entity, date, outcome, subtype."""

from __future__ import annotations

from tests.audit.support import as_user, patient, staff_context


def _ids(client, query: str) -> set[str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/AuditEvent?{query}&_count=1000")
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def test_audit_events_are_searchable_by_patient_agent_entity_outcome_subtype_and_date(client, services):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    nurse = staff_context(practitioner="Practitioner/p1", organisation="Organization/o1")
    assert as_user(services, nurse, "GET", f"Patient/{pid}").status == 200
    assert as_user(services, nurse, "GET", "Patient/missing").status == 404
    by_patient = _ids(client, f"patient=Patient/{pid}")
    assert len(by_patient) == 2  # the create and the nurse's read
    by_agent = _ids(client, "agent=Practitioner/p1")
    assert len(by_agent) == 2
    assert len(by_patient & by_agent) == 1
    assert _ids(client, f"entity=Patient/{pid}") == by_patient
    failed = _ids(client, "outcome=4")
    assert len(failed) == 1 and failed <= by_agent
    reads = _ids(client, "subtype=http://hl7.org/fhir/restful-interaction|read")
    assert by_agent <= reads
    assert _ids(client, "date=ge2000-01-01") >= by_patient | by_agent
    assert _ids(client, "date=lt2000-01-01") == set()


ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def test_audit_events_are_searchable_by_purpose_of_use(client, services):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    nurse = staff_context(practitioner="Practitioner/p1", organisation="Organization/o1")
    emergency = staff_context(practitioner="Practitioner/p2", organisation="Organization/o2", purpose=("BTG",),
                              reason="unconscious in A&E")
    assert as_user(services, nurse, "GET", f"Patient/{pid}").status == 200
    assert as_user(services, emergency, "GET", f"Patient/{pid}").status == 200
    treat_read = _ids(client, f"agent=Practitioner/p1&patient=Patient/{pid}")
    btg_read = _ids(client, f"agent=Practitioner/p2&patient=Patient/{pid}")
    assert len(treat_read) == 1 and len(btg_read) == 1

    assert _ids(client, "purpose=BTG") == btg_read
    assert _ids(client, f"purpose={ACT_REASON}|BTG") == btg_read
    treat = _ids(client, f"purpose={ACT_REASON}|TREAT")
    assert treat_read <= treat and not btg_read & treat
    assert _ids(client, "purpose=http://example.org/other|BTG") == set()
    assert _ids(client, f"purpose=BTG&patient=Patient/{pid}&agent=Organization/o2") == btg_read
    assert btg_read & _ids(client, "purpose:not=BTG") == set()
    assert _ids(client, "purpose=ETREAT,BTG") == btg_read


def test_purpose_search_covers_agent_purpose_of_use_on_partner_events(client):
    """A partner system's AuditEvent (indexed by the generic FHIRPath indexer) carrying the purpose only on
    its agent is found too: the parameter is AuditEvent.purposeOfEvent | AuditEvent.agent.purposeOfUse."""
    event = {"resourceType": "AuditEvent",
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
             "recorded": "2026-01-05T10:00:00Z", "outcome": "0",
             "agent": [{"who": {"display": "research extract job"}, "requestor": True,
                        "purposeOfUse": [{"coding": [{"system": ACT_REASON, "code": "HRESCH"}]}]}],
             "source": {"observer": {"display": "partner"}}}
    r = client.post("/fhir/AuditEvent", json=event)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    assert _ids(client, "purpose=HRESCH") == {eid}
    assert _ids(client, f"purpose={ACT_REASON}|HRESCH") == {eid}


def test_search_rejects_an_unknown_audit_parameter_but_not_purpose(client):
    r = client.get("/fhir/AuditEvent?purpose=BTG")
    assert r.status_code == 200
    r = client.get("/fhir/AuditEvent?purpose-of-use=BTG", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400, r.text
    r = client.get("/fhir/AuditEvent?purpose-of-use=BTG")  # strict unless the client asks for lenient
    assert r.status_code == 400 and "purpose-of-use" in r.text, r.text
    assert client.get("/fhir/AuditEvent?purpose-of-use=BTG", headers={"Prefer": "handling=lenient"}).status_code == 200
    assert client.get("/fhir/AuditEvent?_totalMethod=count&_count=0").status_code == 200


def test_capability_statement_lists_the_purpose_parameter_on_audit_event(client):
    body = client.get("/fhir/metadata").json()
    audit = next(r for r in body["rest"][0]["resource"] if r["type"] == "AuditEvent")
    purpose = [p for p in audit["searchParam"] if p["name"] == "purpose"]
    assert purpose == [{"name": "purpose", "type": "token",
                        "definition": "https://sharedcare.example.org/fhir/SearchParameter/AuditEvent-purpose",
                        "documentation": purpose[0]["documentation"]}]
    assert "BTG" in purpose[0]["documentation"]
