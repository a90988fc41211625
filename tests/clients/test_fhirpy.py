"""fhirpy as a partner system (the GP practice's system, SMART Backend Services) against the running server:
create, read, update, merge patch, delete, search and paging, each through the library."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import partner_token


@pytest.fixture
def fhir(people: Any, server: str) -> Any:
    from fhirpy import SyncFHIRClient

    return SyncFHIRClient(f"{server}/fhir", authorization=f"Bearer {partner_token(server)}")


def _observation(fhir: Any, text: str = "Heart rate", value: int = 72) -> Any:
    return fhir.resource("Observation", status="final", subject={"reference": "Patient/pat-pat"},
                         code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": text},
                         valueQuantity={"value": value, "unit": "/min", "system": "http://unitsofmeasure.org",
                                        "code": "/min"})


def test_create_read_update_delete(fhir):
    from fhirpy.base.exceptions import ResourceNotFound

    obs = _observation(fhir)
    obs.save()  # POST
    assert obs.id and obs["meta"]["versionId"] == "1"
    read = fhir.reference("Observation", obs.id).to_resource()
    assert read["code"]["text"] == "Heart rate" and read["subject"]["reference"] == "Patient/pat-pat"
    read["status"] = "amended"
    read["valueQuantity"]["value"] = 75
    read.save()  # PUT
    again = fhir.reference("Observation", obs.id).to_resource()
    assert again["status"] == "amended" and again["valueQuantity"]["value"] == 75
    assert again["meta"]["versionId"] == "2"
    again.delete()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Observation", obs.id).to_resource()


def test_merge_patch(fhir):
    obs = _observation(fhir)
    obs.save()
    obs.patch(status="amended", note=[{"text": "Taken after exercise"}])  # application/merge-patch+json
    patched = fhir.reference("Observation", obs.id).to_resource()
    assert patched["status"] == "amended" and patched["note"][0]["text"] == "Taken after exercise"
    assert patched["code"]["text"] == "Heart rate" and patched["meta"]["versionId"] == "2"


def test_search_and_paging(fhir):
    made = []
    for i in range(7):
        obs = _observation(fhir, f"Reading {i}", 60 + i)
        obs.save()
        made.append(obs.id)
    other = fhir.resource("Observation", status="final", subject={"reference": "Patient/pat-paula"},
                          code={"coding": [{"system": "http://loinc.org", "code": "8310-5"}], "text": "Temperature"})
    other.save()
    search = fhir.resources("Observation").search(subject="Patient/pat-pat", code="http://loinc.org|8867-4")
    assert search.count() == 7
    first_page = search.limit(3).fetch()
    assert len(first_page) == 3
    everything = search.limit(3).fetch_all()  # follows the `next` links page by page
    assert sorted(o.id for o in everything) == sorted(made)
    newest = search.sort("-value-quantity").first()
    assert newest["valueQuantity"]["value"] == 66
    assert fhir.resources("Observation").search(subject="Patient/pat-paula").fetch()[0].id == other.id
    assert fhir.resources("Patient").search(identifier="https://fhir.nhs.uk/Id/nhs-number|9434765919").get().id \
        == "pat-pat"
