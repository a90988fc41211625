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
