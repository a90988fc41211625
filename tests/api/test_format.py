"""`_format` (https://hl7.org/fhir/R4/http.html#mime-type): `json` and the JSON MIME types, written with `+` or
`%2B`, answer JSON with the matching content type (overriding Accept); XML forms answer FHIR XML; anything
else is 415 with an OperationOutcome naming what was asked (both databases)."""

from __future__ import annotations

import pytest

from tests.api.support import assert_outcome, patient


@pytest.fixture
def url(client) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201, r.text
    return f"/fhir/Patient/{r.json()['id']}"


@pytest.mark.parametrize(("fmt", "media"), [
    ("json", "application/fhir+json"),
    ("application/fhir+json", "application/fhir+json"),
    ("application%2Ffhir%2Bjson", "application/fhir+json"),
    ("application/json+fhir", "application/fhir+json"),
    ("application/json", "application/json"),
    ("application/fhir%2Bjson;%20fhirVersion=4.0", "application/fhir+json"),
])
def test_json_formats(client, url, fmt, media):  # type: ignore[no-untyped-def]
    for target in (url, "/fhir/Patient", "/fhir/metadata"):
        r = client.get(f"{target}?_format={fmt}", headers={"Accept": "application/xml"})
        assert r.status_code == 200, (target, r.text)
        assert r.headers["content-type"].split(";")[0] == media
        assert r.json()["resourceType"]


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "application%2Ffhir%2Bxml", "text/xml",
                                 "application/xml"])
def test_xml_formats_answer_fhir_xml(client, url, fmt):  # type: ignore[no-untyped-def]
    r = client.get(f"{url}?_format={fmt}", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+xml") and b"<Patient" in r.content


@pytest.mark.parametrize("fmt", ["ttl", "text/html", ""])
def test_other_formats_are_415(client, url, fmt):  # type: ignore[no-untyped-def]
    assert_outcome(client.get(f"{url}?_format={fmt}"), 415, f"_format={fmt!r}", "application/fhir+json")


def test_format_with_summary_and_writes(client, url):  # type: ignore[no-untyped-def]
    r = client.get(f"{url}?_format=application/fhir+json&_summary=true")
    assert r.status_code == 200 and r.json()["meta"]["tag"][-1]["code"] == "SUBSETTED"
    r = client.post("/fhir/Patient?_format=json", json=patient())
    assert r.status_code == 201 and r.headers["content-type"].startswith("application/fhir+json")
