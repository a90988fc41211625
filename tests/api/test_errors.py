"""Every error is an OperationOutcome with a diagnostics text naming the problem, and nothing is written."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.support import FHIR, all_versions, assert_outcome, patient
from tests.conftest import make_auth_headers


@pytest.fixture
def existing(client) -> str:  # type: ignore[no-untyped-def]
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    return rid


def _send(client: Any, method: str, url: str, body: Any = None, ctype: str | None = FHIR, **headers: str) -> Any:
    if isinstance(body, (dict, list)):
        import orjson

        body = orjson.dumps(body)
    h = dict(headers)
    if ctype and body is not None:
        h["Content-Type"] = ctype
    return client.request(method, url, content=body, headers=h)


WRITE_ERRORS = [
    # (method, url, body, content type, extra headers, status, words the diagnostics must contain)
    ("POST", "/fhir/Patient", b'{"resourceType": "Patient",', FHIR, {}, 400, ["not valid JSON"]),
    ("PUT", "/fhir/Patient/{rid}", b"{]", FHIR, {}, 400, ["not valid JSON"]),
    ("POST", "/fhir/Patient", b"", FHIR, {}, 400, ["no body"]),
    ("POST", "/fhir/Patient", b"[1, 2]", FHIR, {}, 400, ["JSON object"]),
    ("POST", "/fhir/Patient", {"name": [{"family": "X"}]}, FHIR, {}, 400, ["resourceType"]),
    ("POST", "/fhir/Nonsense", {"resourceType": "Nonsense"}, FHIR, {}, 404, ["Nonsense"]),
    ("POST", "/fhir/Patient", {"resourceType": "Observation", "status": "final", "code": {}}, FHIR, {}, 400,
     ["Observation", "Patient"]),
    ("PUT", "/fhir/Patient/{rid}", {"resourceType": "Patient", "id": "someone-else"}, FHIR, {}, 400,
     ["someone-else", "does not match"]),
    ("PUT", "/fhir/Patient/{rid}", {"resourceType": "Patient"}, FHIR, {}, 400, ["no id"]),
    ("PUT", "/fhir/Patient/bad_id!", {"resourceType": "Patient", "id": "bad_id!"}, FHIR, {}, 400, ["bad_id!"]),
    ("POST", "/fhir/Patient", {"resourceType": "Patient", "birthDate": "31/12/2000", "colour": "blue",
                               "active": "maybe"}, FHIR, {}, 422,
     ["Patient.birthDate", "Patient.colour", "Patient.active"]),
    ("POST", "/fhir/Patient", b"<Patient xmlns='http://hl7.org/fhir'>", "application/fhir+xml", {}, 400, ["XML"]),
    ("POST", "/fhir/Patient", b"name=Smith", "text/plain", {}, 415, ["text/plain"]),
    ("PUT", "/fhir/Patient/{rid}", {"resourceType": "Patient", "id": "{rid}"}, FHIR, {"If-Match": 'W/"1"'}, 412,
     ["version 2", "If-Match"]),
    ("PUT", "/fhir/Patient/{rid}", {"resourceType": "Patient", "id": "{rid}"}, FHIR, {"If-Match": "banana"}, 400,
     ["If-Match"]),
    ("DELETE", "/fhir/Patient/{rid}", None, None, {"If-Match": 'W/"1"'}, 412, ["version 2"]),
    ("PATCH", "/fhir/Patient/gone", [{"op": "remove", "path": "/gender"}], "application/json-patch+json", {}, 410,
     ["deleted"]),
    ("POST", "/fhir/Patient/{rid}", {"resourceType": "Patient"}, FHIR, {}, 405, ["POST", "allowed"]),
    ("PATCH", "/fhir/Patient", [], "application/json-patch+json", {}, 400, ["PATCH", "search criteria"]),
    ("PUT", "/fhir/_history", {"resourceType": "Patient"}, FHIR, {}, 405, ["PUT"]),
    ("DELETE", "/fhir/metadata", None, None, {}, 405, ["DELETE"]),
    ("POST", "/fhir/Patient/{rid}/_history/1", {"resourceType": "Patient"}, FHIR, {}, 405, ["POST"]),
]


@pytest.mark.parametrize("method,url,body,ctype,headers,status,words", WRITE_ERRORS,
                         ids=[f"{c[0]}-{c[5]}-{i}" for i, c in enumerate(WRITE_ERRORS)])
def test_failing_write_is_an_operation_outcome_and_writes_nothing(client, existing, method, url, body, ctype,
                                                                  headers, status, words):
    before = all_versions(client)
    url = url.replace("{rid}", existing)
    if isinstance(body, dict) and body.get("id") == "{rid}":
        body = {**body, "id": existing}
    r = _send(client, method, url, body, ctype, **headers)
    oo = assert_outcome(r, status, *words)
    assert all_versions(client) == before
    if status == 405:
        assert r.headers.get("allow"), "405 must say what is allowed"
    if status == 422:
        expressions = [e for i in oo["issue"] for e in i.get("expression", [])]
        assert {"Patient.birthDate", "Patient.colour", "Patient.active"} <= set(expressions)


READ_ERRORS = [
    ("/fhir/Nonsense/1", 404, ["Nonsense"]),
    ("/fhir/Nonsense", 404, ["Nonsense"]),
    ("/fhir/Patient/not-there", 404, ["Patient/not-there"]),
    ("/fhir/Patient/{rid}/_history/9", 404, ["no version 9"]),
    ("/fhir/Patient/{rid}/_history/x", 404, ["'x'"]),
    ("/fhir/Patient/gone", 410, ["Patient/gone", "deleted"]),
    ("/fhir/Patient/gone/_history/2", 410, ["deletion"]),
    ("/fhir/Patient/{rid}?_format=ttl", 415, ["ttl"]),
    ("/fhir/Patient/_history?_count=-1", 400, ["_count"]),
    ("/fhir/nowhere/at/all/really", 404, []),
]


@pytest.mark.parametrize("url,status,words", READ_ERRORS, ids=[c[0] for c in READ_ERRORS])
def test_failing_read_is_an_operation_outcome(client, existing, url, status, words):
    assert_outcome(client.get(url.replace("{rid}", existing)), status, *words)


def test_deleted_read_carries_the_deletion_etag(client, existing):
    r = client.get("/fhir/Patient/gone")
    assert r.status_code == 410 and r.headers["etag"] == 'W/"2"'


def test_unsupported_http_method_is_405_with_allow(client):
    r = client.request("OPTIONS", "/fhir/Patient")
    assert_outcome(r, 405)
    assert "GET" in r.headers["allow"]


def test_accept_xml_is_answered_in_xml(client, existing):  # (XML in and out: tests/api/test_xml.py)
    r = client.get(f"/fhir/Patient/{existing}", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+xml")
    r = client.get("/fhir/Patient/nope", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 404 and b"<OperationOutcome" in r.content


def test_body_over_the_limit_is_413_and_writes_nothing(clean_services, settings):
    from service.api.app import create_app

    small = settings.model_copy(update={"max_body_bytes": 2000})
    app = create_app(small, services=replace(clean_services, settings=small))
    with TestClient(app, headers=make_auth_headers(clean_services)) as client:
        big = patient(name=[{"family": "X" * 3000}])
        r = client.post("/fhir/Patient", json=big)
        assert_outcome(r, 413, "2000 bytes", "SHAREDCARE_MAX_BODY_BYTES")
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}}] * 40}
        assert_outcome(client.post("/fhir", json=bundle), 413, "2000")
        chunked = client.post("/fhir/Patient", content=iter([b"{" + b" " * 1500, b" " * 1500 + b"}"]),
                              headers={"Content-Type": FHIR})
        assert_outcome(chunked, 413)
        assert client.post("/fhir/Patient", json=patient()).status_code == 201
        assert len(all_versions(client)) == 1


class _BrokenPolicy:
    """An access policy with a bug: the client must get a 500 OperationOutcome, never the trace."""

    def bind(self, *args: Any) -> Any:
        raise RuntimeError("secret internal detail /srv/app/guard.py line 42")


def test_no_stack_trace_reaches_the_client(clean_services, settings):
    from service.api.app import create_app

    app = create_app(settings, services=replace(clean_services, policy=_BrokenPolicy()))
    with TestClient(app, raise_server_exceptions=False, headers=make_auth_headers(clean_services)) as client:
        for r in (client.get("/fhir/Patient/x"), client.post("/fhir/Patient", json=patient())):
            assert_outcome(r, 500, "Internal error")
            assert "secret" not in r.text and "guard.py" not in r.text and "RuntimeError" not in r.text
    with TestClient(create_app(settings, services=clean_services), headers=make_auth_headers(clean_services)) as client:
        assert all_versions(client) == []
