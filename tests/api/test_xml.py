"""FHIR XML in and out (application/fhir+xml): every example of the R4 specification and of UK Core round-trips
JSON -> XML -> JSON to its JSON form (decimals as written; narrative compared as parsed XHTML; comments are not
content), and over HTTP: XML bodies create, update and patch, `_format`/Accept give XML answers (Bundles and
OperationOutcomes too), bad XML is a 400 naming the problem, and a hidden resource answers in XML exactly as a
missing one (both databases)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from service.fhir import xml as fhir_xml
from tests.api.support import patient
from tests.conftest import DATA
from tests.policy.conftest import PEOPLE
from tests.policy.support import observation
from tests.workflows.support import As

XML = "application/fhir+xml"
NS = "{http://hl7.org/fhir}"
EXAMPLES = sorted([*(DATA / "fhir-r4-spec" / "examples").glob("*.json"), *(DATA / "ukcore-examples").rglob("*.json")])
MISSING = "00000000-0000-4000-8000-000000000000"


def _meaning(o: Any) -> Any:
    """JSON as FHIR means it: the narrative as parsed XHTML, no comments (`fhir_comments`), nothing empty left."""
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if k == "fhir_comments":
                continue
            v = fhir_xml._xhtml(ET.fromstring(v), top=True) if k == "div" and isinstance(v, str) else _meaning(v)
            if v != {}:
                out[k] = v
        return out
    if isinstance(o, list):
        return [_meaning(x) for x in o]
    return o


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_round_trips_through_xml(path: Path) -> None:
    raw = path.read_bytes()
    xml = fhir_xml.to_xml(raw)
    ET.fromstring(xml)  # well-formed
    back = fhir_xml.to_json(xml)
    assert _meaning(json.loads(back, parse_float=Decimal)) == _meaning(json.loads(raw, parse_float=Decimal))


def test_decimals_keep_their_text_both_ways() -> None:
    res = b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}'
    xml = fhir_xml.to_xml(res)
    assert b'<value value="1.50"/>' in xml
    assert b'"value":1.50' in fhir_xml.to_json(xml)


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {short: As(client, auth_headers(user)) for short, user in PEOPLE.items()}


def _xml(r: Any) -> ET.Element:
    assert r.headers["content-type"].startswith(XML), (r.status_code, r.text)
    return ET.fromstring(r.content)


def test_create_read_update_patch_and_search_in_xml(client):  # type: ignore[no-untyped-def]
    body = fhir_xml.to_xml(json.dumps(patient(birthDate="1970-01-01")).encode())
    r = client.post("/fhir/Patient", content=body, headers={"Content-Type": XML, "Accept": XML})
    assert r.status_code == 201
    root = _xml(r)
    rid = root.find(f"{NS}id").get("value")
    assert root.find(f"{NS}birthDate").get("value") == "1970-01-01"
    assert client.get(f"/fhir/Patient/{rid}").json()["name"] == [{"family": "Smith", "given": ["Jo"]}]
    current = client.get(f"/fhir/Patient/{rid}?_format=xml").content
    updated = current.replace(b'<birthDate value="1970-01-01"/>', b'<birthDate value="1971-02-03"/>')
    r = client.put(f"/fhir/Patient/{rid}", content=updated, headers={"Content-Type": XML})
    assert r.status_code == 200 and r.json()["birthDate"] == "1971-02-03"
    fhirpath = (b'<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>'
                b'<part><name value="type"/><valueCode value="add"/></part>'
                b'<part><name value="path"/><valueString value="Patient"/></part>'
                b'<part><name value="name"/><valueString value="active"/></part>'
                b'<part><name value="value"/><valueBoolean value="true"/></part></parameter></Parameters>')
    r = client.patch(f"/fhir/Patient/{rid}", content=fhirpath, headers={"Content-Type": XML, "Accept": XML})
    assert r.status_code == 200
    assert _xml(r).find(f"{NS}active").get("value") == "true"
    bundle = _xml(client.get("/fhir/Patient?_format=xml"))
    assert bundle.tag == f"{NS}Bundle"
    assert bundle.find(f"{NS}entry/{NS}resource/{NS}Patient/{NS}id").get("value") == rid
    history = _xml(client.get(f"/fhir/Patient/{rid}/_history", headers={"Accept": XML}))
    assert len(history.findall(f"{NS}entry")) == 3


@pytest.mark.parametrize(("body", "words"), [
    (b"<Patient xmlns='http://hl7.org/fhir'>", "well-formed"),
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]><Patient xmlns='http://hl7.org/fhir'/>", "DTD"),
    (b"<Patient/>", "FHIR namespace"),
    (b"<Patient xmlns='http://hl7.org/fhir'><colour value='blue'/></Patient>", "<colour>"),
    (b"<Patient xmlns='http://hl7.org/fhir'><active value='maybe'/></Patient>", "boolean"),
])
def test_bad_xml_is_400_in_xml(client, body, words):  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", content=body, headers={"Content-Type": XML, "Accept": XML})
    assert r.status_code == 400
    root = _xml(r)
    assert root.tag == f"{NS}OperationOutcome"
    assert words in root.find(f"{NS}issue/{NS}diagnostics").get("value")


def test_hidden_answers_in_xml_as_missing(who):  # type: ignore[no-untyped-def]
    hidden = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "private")).json()["id"]
    for suffix in ("", "/_history/1", "/_history"):
        a = who["wes"].get(f"/fhir/Observation/{hidden}{suffix}?_format=xml")
        b = who["wes"].get(f"/fhir/Observation/{MISSING}{suffix}?_format=xml")
        assert a.status_code == b.status_code == 404
        assert a.content.replace(hidden.encode(), b"ID") == b.content.replace(MISSING.encode(), b"ID")
        assert a.headers["content-type"] == b.headers["content-type"]


def test_every_kind_of_answer_renders_as_xml(client):  # type: ignore[no-untyped-def]
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                           "subject": {"reference": f"Patient/{rid}"}, "valueQuantity": {"value": 1.50}})
    for url, tag in (("/fhir/metadata", "CapabilityStatement"), (f"/fhir/Patient/{rid}/$everything", "Bundle"),
                     ("/fhir/_history", "Bundle"), (f"/fhir/Patient/{rid}/$meta", "Parameters"),
                     ("/fhir/Observation?code:text=x&_include=Observation:subject", "Bundle"),
                     ("/fhir/Nonsense", "OperationOutcome")):
        r = client.get(url, headers={"Accept": XML})
        assert _xml(r).tag == f"{NS}{tag}", (url, r.text[:300])


def test_a_type_xml_cannot_carry_is_415_before_anything_is_read(client):  # type: ignore[no-untyped-def]
    for url in ("/fhir/MedicinalProduct/x", "/fhir/MedicinalProduct"):
        r = client.get(url, headers={"Accept": XML})
        assert r.status_code == 415
        assert "MedicinalProduct" in _xml(r).find(f"{NS}issue/{NS}diagnostics").get("value")
    assert client.get("/fhir/MedicinalProduct").status_code == 200  # (in JSON, as ever)
