"""Content negotiation: FHIR JSON and plain JSON in and out, _format, _pretty, XML, UTF-8."""

from __future__ import annotations

import orjson

from tests.api.support import FHIR, assert_outcome, patient

NAMES = {"family": "Łukasiewicz-Ñandú", "given": ["Zoë", "山田", "Сергей", "👩‍⚕️"]}


def test_application_json_in_and_out(client):
    r = client.post("/fhir/Patient", content=orjson.dumps(patient()),
                    headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    read = client.get(f"/fhir/Patient/{r.json()['id']}", headers={"Accept": "application/json"})
    assert read.headers["content-type"] == "application/json; charset=utf-8"


def test_fhir_json_is_the_default_and_charset_is_declared(client):
    r = client.post("/fhir/Patient", content=orjson.dumps(patient()),
                    headers={"Content-Type": "application/fhir+json; charset=utf-8"})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    for accept in ("*/*", "application/fhir+json", "application/fhir+json;q=0.9, application/fhir+xml;q=0.8"):
        got = client.get(f"/fhir/Patient/{r.json()['id']}", headers={"Accept": accept})
        assert got.status_code == 200 and got.headers["content-type"].startswith(FHIR), accept


def test_format_json_and_pretty(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for fmt in ("json", "application/fhir%2Bjson", "application/json"):
        r = client.get(f"/fhir/Patient/{rid}?_format={fmt}")
        assert r.status_code == 200 and r.json()["id"] == rid, fmt
    compact = client.get(f"/fhir/Patient/{rid}")
    pretty = client.get(f"/fhir/Patient/{rid}?_pretty=true")
    assert b"\n" not in compact.content
    assert b'\n  "resourceType": "Patient"' in pretty.content
    assert pretty.json() == compact.json()
    assert b"\n" in client.get("/fhir/Patient/nope?_pretty=true").content  # errors too
    assert client.get(f"/fhir/Patient/{rid}?_format=json&_pretty=false").content == compact.content


def test_xml_whichever_way_it_is_asked_for(client):  # (XML in and out: tests/api/test_xml.py)
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for r in (client.get(f"/fhir/Patient/{rid}?_format=xml"),
              client.get(f"/fhir/Patient/{rid}?_format=application/fhir%2Bxml"),
              client.get(f"/fhir/Patient/{rid}", headers={"Accept": "application/fhir+xml"})):
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+xml"), r.text
        assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir">')
    posted = client.post("/fhir/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'/>",
                         headers={"Content-Type": "application/fhir+xml"})
    assert posted.status_code == 201, posted.text
    assert_outcome(client.post("/fhir/Patient", content=b"{}", headers={"Content-Type": "text/plain"}), 415,
                   "text/plain")


def test_utf8_names_round_trip_unescaped(client):
    r = client.post("/fhir/Patient", content=orjson.dumps(patient(name=[NAMES])),
                    headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    got = client.get(f"/fhir/Patient/{rid}")
    assert got.json()["name"] == [NAMES]
    assert "Zoë".encode() in got.content and "山田".encode() in got.content  # UTF-8 bytes, not \\u escapes
    hist = client.get(f"/fhir/Patient/{rid}/_history").json()
    assert hist["entry"][0]["resource"]["name"] == [NAMES]
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": patient(name=[NAMES]), "request": {"method": "POST", "url": "Patient"}}]}
    tx = client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": FHIR}).json()
    assert tx["entry"][0]["resource"]["name"] == [NAMES]


def test_body_that_is_not_utf8_is_400(client):
    latin1 = '{"resourceType": "Patient", "name": [{"family": "Zoë"}]}'.encode("latin-1")
    assert_outcome(client.post("/fhir/Patient", content=latin1, headers={"Content-Type": FHIR}), 400, "UTF-8")
