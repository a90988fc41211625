"""What a client sends is what it reads back (SQLite and PostgreSQL), apart from `meta` and the server's `id`
(written first, after `resourceType`):
decimal literals exactly as written (`1.50`, `1e2`, `-2.0E-3`, digits past a double's precision), the order
of elements and arrays, and Unicode; on create, read, vread, update, search and in a transaction Bundle."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

LITERALS = ["1.50", "1e2", "-2.0E-3", "0.1000000000000000055511151231257827", "0.0000093", "100.0", "72.5",
            "3", "12345678901234567.25", "1E+2", "0.010"]


def observation(pid: str, value: str = "1.50") -> bytes:
    """A raw body: the literals as written, elements in an unusual order, Unicode both raw and escaped."""
    return ('{"valueQuantity": {"unit": "kg", "value": ' + value + ', "system": "http://unitsofmeasure.org", '
            '"code": "kg"}, "resourceType": "Observation", "status": "final", '
            '"code": {"text": "Gewicht \u00e9\u00e8 \\u00e9 \U0001f600 \u4f53\u91cd", '
            '"coding": [{"system": "http://loinc.org", "code": "29463-7"}, {"system": "http://snomed.info/sct", '
            '"code": "27113001"}]}, "subject": {"reference": "Patient/' + pid + '"}, '
            '"component": [' + ", ".join(
                f'{{"code": {{"text": "c{i}"}}, "valueQuantity": {{"value": {lit}}}}}'
                for i, lit in enumerate(LITERALS)) + ']}').encode()


def literal_tree(raw: bytes) -> Any:
    """The JSON with every number kept as its text (so 1.50 and 1.5 differ), without meta and id, and with
    resourceType first (the server writes resourceType, id and meta ahead of the rest)."""
    tree = json.loads(raw, parse_float=lambda s: ("num", s), parse_int=lambda s: ("num", s))
    tree.pop("meta", None)
    tree.pop("id", None)
    return {"resourceType": tree.pop("resourceType"), **tree}


def same_as_sent(sent: bytes, got: bytes) -> None:
    a, b = literal_tree(sent), literal_tree(got)
    assert b == a
    assert json.dumps(b) == json.dumps(a)  # the same order of elements and arrays, not only equal
    for lit in LITERALS:
        assert lit.encode() in got, lit


@pytest.fixture
def pid(client):  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Ng\u0169y\u1ec5n"}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


JSON = {"Content-Type": "application/fhir+json"}


def test_create_read_search_serve_what_was_sent(client, pid):  # type: ignore[no-untyped-def]
    sent = observation(pid)
    r = client.post("/fhir/Observation", content=sent, headers=JSON)
    assert r.status_code == 201, r.text
    same_as_sent(sent, r.content)
    oid = r.json()["id"]
    read = client.get(f"/fhir/Observation/{oid}")
    same_as_sent(sent, read.content)
    assert b'"value":1.50' in read.content and b'"value":1e2' in read.content
    assert "\U0001f600".encode() in read.content and "\u4f53\u91cd".encode() in read.content
    vread = client.get(f"/fhir/Observation/{oid}/_history/1")
    same_as_sent(sent, vread.content)
    # search serves the stored bytes too, and the value is found by its number
    found = client.get("/fhir/Observation?value-quantity=1.5")
    assert found.status_code == 200
    assert b'"value":1.50' in found.content and b'"value":-2.0E-3' in found.content
    assert client.get("/fhir/Observation?value-quantity=1.50").json()["total"] == 1
    # subsets and pretty printing keep them as well
    for url in (f"/fhir/Observation/{oid}?_pretty=true", f"/fhir/Observation/{oid}?_elements=valueQuantity",
                f"/fhir/Observation/{oid}?_summary=data", "/fhir/Observation?_elements=valueQuantity",
                "/fhir/Observation?_summary=data&_pretty=true"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text)
        assert b"1.50" in r.content and b"1.5," not in r.content, url
    assert client.get("/fhir/Observation?component-value-quantity=1e2").json()["total"] == 1


def test_update_and_transaction_keep_the_literals(client, pid):  # type: ignore[no-untyped-def]
    oid = client.post("/fhir/Observation", content=observation(pid, "5"), headers=JSON).json()["id"]
    sent = observation(pid, "4.20").replace(b'{"valueQuantity"', b'{"id": "' + oid.encode() + b'", "valueQuantity"')
    r = client.put(f"/fhir/Observation/{oid}", content=sent, headers=JSON)
    assert r.status_code == 200, r.text
    same_as_sent(sent, client.get(f"/fhir/Observation/{oid}").content)
    assert b'"value":4.20' in client.get(f"/fhir/Observation/{oid}/_history/2").content
    assert b'"value":5,' in client.get(f"/fhir/Observation/{oid}/_history/1").content
    # a transaction: each entry stored as sent (one value written two ways in two entries, too)
    entries = [observation(pid, "7.10"), observation(pid, "7.1"), observation(pid, "8.000")]
    bundle = (b'{"resourceType": "Bundle", "type": "transaction", "entry": [' + b", ".join(
        b'{"request": {"method": "POST", "url": "Observation"}, "resource": ' + e + b"}" for e in entries) + b"]}")
    r = client.post("/fhir", content=bundle, headers=JSON)
    assert r.status_code == 200, r.text
    for entry, sent_entry in zip(r.json()["entry"], entries, strict=True):
        location = entry["response"]["location"].split("/_history")[0].removeprefix("http://testserver/fhir/")
        got = client.get(f"/fhir/{location}").content
        same_as_sent(sent_entry, got)


def test_what_a_float_writes_the_same_way_is_untouched(client, pid):  # type: ignore[no-untyped-def]
    sent = observation(pid, "72.25")
    oid = client.post("/fhir/Observation", content=sent, headers=JSON).json()["id"]
    read = client.get(f"/fhir/Observation/{oid}").content
    assert orjson.loads(read)["valueQuantity"]["value"] == 72.25 and b'"value":72.25' in read


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "01.5", "1.", ".5", "1e", "0x10"])
def test_numbers_json_does_not_allow_are_refused(client, pid, value):  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Observation", content=observation(pid, value), headers=JSON)
    assert r.status_code == 400, (value, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"


def test_the_probe_misses_no_literal_a_float_would_rewrite() -> None:
    """service.fhir.decimals skips the exact pass when no literal can be rewritten: checked by brute force."""
    from service.fhir.decimals import lossy_literals

    rng = random.Random(13)
    for _ in range(50_000):
        whole = str(rng.choice([0, 0, rng.randint(0, 9), rng.randint(0, 10 ** rng.randint(1, 18))]))
        frac = "0" * rng.choice([0, 0, 1, 3, 4, 5, 6]) + "".join(
            rng.choice("0123456789") for _ in range(rng.randint(1, rng.choice([3, 8, 18]))))
        lit = ("-" if rng.random() < 0.2 else "") + whole + "." + frac
        if rng.random() < 0.1:
            lit += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 30))
        body = f'{{"a": [1, {lit} ], "b":{lit}}}'.encode()
        if orjson.dumps(float(lit)) != lit.encode():
            found = lossy_literals(body)
            assert found is not None and lit.encode() in found[float(lit)], lit


def test_patch_keeps_the_stored_literals_and_writes_the_patch_literals(client, pid):  # type: ignore[no-untyped-def]
    sent = observation(pid)
    oid = client.post("/fhir/Observation", content=sent, headers=JSON).json()["id"]
    ops = b'[{"op": "replace", "path": "/status", "value": "amended"}, ' \
          b'{"op": "add", "path": "/component/0/valueQuantity/value", "value": 3.10}]'
    r = client.patch(f"/fhir/Observation/{oid}", content=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    got = client.get(f"/fhir/Observation/{oid}").content
    assert b'"status":"amended"' in got and b'"value":3.10' in got
    for lit in LITERALS[1:]:  # every value the patch left alone, as it was sent
        assert lit.encode() in got, lit
    assert b'"value":1.50' in got
    merge = client.patch(f"/fhir/Observation/{oid}", content=b'{"valueQuantity": {"value": 9.90, "unit": "kg"}}',
                         headers={"Content-Type": "application/merge-patch+json"})
    assert merge.status_code == 200, merge.text
    got = client.get(f"/fhir/Observation/{oid}").content
    assert b'"value":9.90' in got and b'"value":3.10' in got and b'"value":1e2' in got
