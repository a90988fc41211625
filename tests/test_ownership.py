"""Whose data is this: one answer (service.ownership.owners) for the policy, the search index and the audit."""

from __future__ import annotations

from typing import Any

import pytest

from service.ownership import NOT_PATIENT_DATA, is_patient_data, owners

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def ref(text: str) -> dict[str, str]:
    return {"reference": text}


@pytest.mark.parametrize("resource,expected", [
    ({"resourceType": "Patient", "id": "p1"}, ("p1",)),
    ({"resourceType": "Observation", "subject": ref("Patient/p1"), "performer": [ref("Patient/p2")]}, ("p1", "p2")),
    ({"resourceType": "Task", "for": ref("Patient/p1"), "owner": ref("Organization/o1")}, ("p1",)),
    ({"resourceType": "QuestionnaireResponse", "subject": ref("Patient/p1")}, ("p1",)),
    ({"resourceType": "Consent", "patient": ref("http://testserver/fhir/Patient/p1")}, ("p1",)),
    ({"resourceType": "DocumentReference", "subject": ref("Patient/p1/_history/3")}, ("p1",)),
    ({"resourceType": "Flag", "subject": ref("Patient/p1")}, ("p1",)),
    # anything else that names a patient, anywhere, is theirs
    ({"resourceType": "Basic", "extension": [{"url": "x", "valueReference": ref("Patient/p9")}]}, ("p9",)),
    # nobody's: naming no one, and the positive list
    ({"resourceType": "Task", "status": "draft"}, ()),
    ({"resourceType": "Organization", "partOf": ref("Patient/p1")}, ()),
    ({"resourceType": "Practitioner", "id": "x"}, ()),
    ({"resourceType": "Questionnaire", "id": "x"}, ()),
    # not literal references: a contained one, a search
    ({"resourceType": "Observation", "subject": ref("#p")}, ()),
    ({"resourceType": "Observation", "subject": ref("Patient?identifier=x|y")}, ()),
])
def test_direct_owners(resource: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert owners(resource["resourceType"], resource) == expected


def test_owners_through_what_a_resource_refers_to() -> None:
    record = {"QuestionnaireResponse/qr1": ("p1",), "Observation/o1": ("p2",), "Organization/o1": (),
              f"{NHS}|9434765919": ("pat-pat",)}
    asked: list[set[str]] = []

    def resolve(keys: set[str]) -> dict[str, tuple[str, ...]]:
        asked.append(set(keys))
        return {k: record[k] for k in keys if k in record}

    prov = {"resourceType": "Provenance", "target": [ref("QuestionnaireResponse/qr1/_history/2")],
            "agent": [{"who": ref("Practitioner/x")}]}
    assert owners("Provenance", prov, resolve) == ("p1",)
    audit = {"resourceType": "AuditEvent", "entity": [{"what": ref("Observation/o1/_history/1")}]}
    assert owners("AuditEvent", audit, resolve) == ("p2",)
    # a Task about someone's assessment, naming no patient itself
    task = {"resourceType": "Task", "focus": ref("QuestionnaireResponse/qr1"), "owner": ref("Organization/o1")}
    assert owners("Task", task, resolve) == ("p1",)
    # a partner's logical reference by NHS number
    obs = {"resourceType": "Observation", "subject": {"identifier": {"system": NHS, "value": "943 476 5919"}}}
    assert owners("Observation", obs, resolve) == ("pat-pat",)
    # directories are never asked about
    assert all("Organization/o1" not in keys and "Practitioner/x" not in keys for keys in asked)


def test_every_type_is_either_on_the_positive_list_or_patient_data() -> None:
    from service.fhir.types import RESOURCE_TYPES

    assert NOT_PATIENT_DATA <= RESOURCE_TYPES
    for rtype in ("Task", "Provenance", "AuditEvent", "QuestionnaireResponse", "Consent", "DocumentReference",
                  "Flag", "Group", "Bundle"):
        assert is_patient_data(rtype), rtype
    for rtype in ("Organization", "Practitioner", "PractitionerRole", "Questionnaire", "ValueSet", "Location"):
        assert not is_patient_data(rtype), rtype


def test_the_index_and_the_audit_use_the_same_answer(client, services) -> None:  # type: ignore[no-untyped-def]
    """A Task for a person and a Provenance about their assessment are in their compartment (search), and an
    access to them names the person in the audit trail."""
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Owner"}]}).json()["id"]
    task = client.post("/fhir/Task", json={"resourceType": "Task", "status": "requested", "intent": "order",
                                           "for": ref(f"Patient/{pid}")}).json()
    qr = client.post("/fhir/QuestionnaireResponse", json={"resourceType": "QuestionnaireResponse",
                                                          "status": "in-progress", "subject": ref(f"Patient/{pid}")}
                     ).json()
    prov = client.post("/fhir/Provenance", json={"resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
                                                 "target": [ref(f"QuestionnaireResponse/{qr['id']}")],
                                                 "agent": [{"who": {"display": "someone"}}]}).json()
    found = client.get(f"/fhir/Patient/{pid}/*?_count=100").json()
    ids = {e["resource"]["id"] for e in found.get("entry", [])}
    assert {task["id"], qr["id"], prov["id"]} <= ids
    client.get(f"/fhir/Provenance/{prov['id']}")
    events = client.get(f"/fhir/AuditEvent?entity=Provenance/{prov['id']}&_sort=-date&_count=1").json()["entry"]
    named = [e["what"]["reference"] for e in events[0]["resource"]["entity"] if e.get("role", {}).get("code") == "1"]
    assert named == [f"Patient/{pid}"]
