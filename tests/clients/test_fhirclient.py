"""fhirclient (SMART on FHIR's Python client) against the running server: a standalone launch through the
embedded authorisation server (discovery from the CapabilityStatement, PKCE, the login form), then reads and
searches through the library's models, paging included."""

from __future__ import annotations

from typing import Any

import pytest

from tests.auth.conftest import REDIRECT
from tests.clients.conftest import browser_login, partner_token


def _launch(server: str, username: str, scope: str, patient: str = "") -> Any:
    from fhirclient import client

    smart = client.FHIRClient(settings={"app_id": "demo-app", "api_base": f"{server}/fhir", "redirect_uri": REDIRECT,
                                        "scope": scope}, save_func=lambda state: None)
    url = smart.authorize_url  # discovered from /fhir/metadata (the oauth-uris extension)
    assert url.startswith(f"{server}/auth/authorize?")
    smart.handle_callback(browser_login(url, username, patient=patient))
    assert smart.ready
    return smart


def _observations(server: str, patient: str, n: int) -> list[str]:
    """Written by the GP system (fhirpy is tested on its own; plain HTTP keeps this test about fhirclient)."""
    import httpx

    headers = {"Authorization": f"Bearer {partner_token(server)}", "Content-Type": "application/fhir+json"}
    out = []
    for i in range(n):
        r = httpx.post(f"{server}/fhir/Observation", headers=headers, timeout=30, json={
            "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": f"Heart rate {i}"},
            "valueQuantity": {"value": 60 + i, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}})
        assert r.status_code == 201, r.text
        out.append(r.json()["id"])
    return out


def test_standalone_launch_as_a_professional_then_read_and_search(people, server):
    from fhirclient.models.careplan import CarePlan
    from fhirclient.models.observation import Observation

    written = _observations(server, "pat-pat", 5)
    smart = _launch(server, "nurse.nina", "openid fhirUser launch/patient patient/*.rs", patient="pat-pat")
    assert smart.patient_id == "pat-pat"
    patient = smart.patient
    assert patient.id == "pat-pat" and smart.human_name(patient.name[0]) == "Pat Example"
    plan = CarePlan.read("careplan-pat-1", smart.server)
    assert plan.title == "Staying well at home" and plan.subject.reference == "Patient/pat-pat"
    plans = CarePlan.where({"subject": "Patient/pat-pat", "status": "active"}).perform_resources(smart.server)
    assert [p.id for p in plans] == ["careplan-pat-1"]
    # paging: two per page, the library follows the `next` links
    search = Observation.where({"subject": "Patient/pat-pat", "_count": "2", "_sort": "_id"})
    first = search.perform(smart.server)
    assert first.total == 5 and len(first.entry) == 2
    assert any(link.relation == "next" for link in first.link)
    found = [o.id for o in search.perform_resources_iter(smart.server)]
    assert sorted(found) == sorted(written) and len(found) == 5


def test_what_the_launch_does_not_reach_is_refused(people, server):
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient
    from fhirclient.server import FHIRNotFoundException, FHIRPermissionDeniedException

    smart = _launch(server, "patient.pat", "openid fhirUser launch/patient patient/*.rs")
    assert smart.patient_id == "pat-pat"
    with pytest.raises((FHIRNotFoundException, FHIRPermissionDeniedException)):
        Patient.read("pat-paula", smart.server)
    _observations(server, "pat-paula", 1)
    assert Observation.where({"subject": "Patient/pat-paula"}).perform_resources(smart.server) == []
