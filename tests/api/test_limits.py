"""The documented limits, and hostile input at the HTTP edge: each answered with a clear OperationOutcome (never a
5xx), nothing written. Search: at most 40 parameters, 100 values in one parameter, 10 _include/_revinclude,
chains 3 deep, _count 1000; no control characters in any value (query, If-None-Exist, body strings); paging
cursors that do not fit are refused; the statement timeout answers 400 too-costly for a read and 503 with
Retry-After for a write. On SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.support import FHIR, assert_outcome, patient

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
       "subject": {"reference": "Patient/pat-pat"}}


def _count(client: Any, rtype: str) -> int:
    return client.get(f"/fhir/{rtype}?_summary=count").json()["total"]


@pytest.mark.parametrize("query,words", [
    ("&".join(f"code=a{i}" for i in range(41)), ["at most 40 parameters", "41"]),
    ("code=" + ",".join(f"a{i}" for i in range(101)), ["'code'", "more than 100 values"]),
    ("&".join(f"_include=Observation:subject{'x' * i}" for i in range(11)), ["at most 10 _include"]),
    ("subject.organization.partof.partof.name=x", ["deeper than 3"]),
    ("name=a%00b", ["'name'", "control character"]),
    ("identifier=x%1Fy", ["'identifier'", "control character"]),
    ("code%00=x", ["control character"]),
    ("_count=%C2%B2", ["_count"]),  # a superscript two: a digit to Python, not a number
])
def test_search_limits_and_bad_values(client, query, words):
    assert_outcome(client.get(f"/fhir/Observation?{query}"), 400, *words)


def test_the_limits_allow_what_clients_send(demo, client):
    ok = client.get("/fhir/Observation?" + "&".join(f"code=a{i}" for i in range(39)) + "&_count=10")
    assert ok.status_code == 200, ok.text
    assert client.get("/fhir/Observation?code=" + ",".join(f"a{i}" for i in range(100))).status_code == 200
    big = client.get("/fhir/Observation?_count=" + "9" * 5000)  # reduced to the maximum, said in a warning
    assert big.status_code == 200 and any("1000" in i["diagnostics"] for e in big.json()["entry"]
                                          if e["search"]["mode"] == "outcome" for i in e["resource"]["issue"])


def test_control_characters_in_a_body_are_refused_and_nothing_is_written(demo, client):
    before = _count(client, "Observation")
    tail = b'"subject":{"reference":"Patient/pat-pat"}}'
    for raw in (b'{"resourceType":"Observation","status":"final","code":{"text":"a\\u0000b"},' + tail,
                b'{"resourceType":"Observation","status":"final","code":{"text":"bell \\u0007"},' + tail):
        assert_outcome(client.post("/fhir/Observation", content=raw, headers={"Content-Type": FHIR}), 400,
                       "control character")
    fine = b'{"resourceType":"Observation","status":"final","code":{"text":"tab\\tand \\\\u0000 as text"},' \
           b'"subject":{"reference":"Patient/pat-pat"}}'
    r = client.post("/fhir/Observation", content=fine, headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    assert r.json()["code"]["text"] == "tab\tand \\u0000 as text"
    assert _count(client, "Observation") == before + 1
    assert_outcome(client.post("/fhir/Observation", json=OBS, headers={"If-None-Exist": "code=a%00b"}), 400,
                   "control character")
    assert _count(client, "Observation") == before + 1


@pytest.mark.parametrize("url", [
    "/fhir/_history?_cursor=99999999999999999999999.9",
    "/fhir/Patient/_history?_cursor=1.99999999999999999999",
    "/fhir/Patient/_history?_cursor=%C2%B2.1",
    "/fhir/_history?_snapshot=99999999999999999999999",
    "/fhir/_history?_count=" + "1" * 5000,
])
def test_history_paging_values_that_do_not_fit(client, url):
    r = client.get(url)
    if "_count" in url:
        assert r.status_code == 200, r.text  # a huge _count is the maximum, as for searches
    else:
        assert_outcome(r, 400, "not a valid paging")


@pytest.fixture
def slow_client(clean_services, settings):  # type: ignore[no-untyped-def]
    """The API with a half-second statement timeout, on the test database."""
    from service.api.app import create_app
    from service.bootstrap import build_services

    tight = settings.model_copy(update={"statement_timeout": 0.5})
    services = build_services(tight)
    from tests.conftest import make_auth_headers

    with TestClient(create_app(tight, services=services), headers=make_auth_headers(services)) as c:
        yield c
    services.db.dispose()


def test_the_statement_timeout_answers_a_clear_error(demo, slow_client, client):
    """PostgreSQL: another session holds a lock the request needs, for longer than the limit."""
    if not demo.db.is_postgres:
        pytest.skip("SQLite: see the next test")
    held, release = threading.Event(), threading.Event()

    def hold(statement: str) -> None:
        with demo.db.engine.connect() as conn, conn.begin():
            conn.execute(text(statement))
            held.set()
            release.wait(10)

    for statement, request, status, words in [
        ("SELECT 1 FROM resource WHERE res_type = 'Patient' AND res_id = 'pat-pat' FOR UPDATE",
         lambda: slow_client.put("/fhir/Patient/pat-pat", json=client.get("/fhir/Patient/pat-pat").json()),
         503, ["could not be made within 0.5 s"]),
        ("LOCK TABLE resource IN ACCESS EXCLUSIVE MODE",
         lambda: slow_client.get("/fhir/Observation?subject=Patient/pat-pat"), 400, ["0.5-second limit", "narrow"]),
    ]:
        held.clear(), release.clear()
        before = client.get("/fhir/Patient/pat-pat").json()["meta"]["versionId"]
        t = threading.Thread(target=hold, args=(statement,))
        t.start()
        assert held.wait(10)
        try:
            r = request()
        finally:
            release.set()
            t.join()
        body = assert_outcome(r, status, *words)
        assert body["issue"][0]["code"] == ("transient" if status == 503 else "too-costly")
        if status == 503:
            assert r.headers["retry-after"]
        assert client.get("/fhir/Patient/pat-pat").json()["meta"]["versionId"] == before  # nothing written


def test_the_statement_timeout_on_sqlite(demo, client, clean_services, settings):
    if demo.db.is_postgres:
        pytest.skip("PostgreSQL: see the previous test")
    from service.api.app import create_app
    from service.bootstrap import build_services
    from tests.conftest import make_auth_headers

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(name=[{"family": f"Slowcombe{i}", "given": ["Al", "Bo"]}]),
         "request": {"method": "POST", "url": "Patient"}} for i in range(1500)]}
    assert client.post("/fhir", json=bundle).status_code == 200
    tight = settings.model_copy(update={"statement_timeout": 0.000001})  # (past before the first check)
    services = build_services(tight)
    try:
        with TestClient(create_app(tight, services=services), headers=make_auth_headers(services)) as c:
            r = c.get("/fhir/Patient?name:contains=lowcom&_total=accurate")
            assert_outcome(r, 400, "limit", "narrow")
    finally:
        services.db.dispose()


def test_a_long_url_gets_414_and_every_answer_is_private(demo, client):
    r = client.get("/fhir/Patient?name=" + "a" * (17 * 1024))
    assert_outcome(r, 414, "longer than", "POST [type]/_search")
    for resp in (client.get("/fhir/Patient/pat-pat"), client.get("/fhir/Patient/nobody"), r,
                 client.get("/fhir/Observation?subject=Patient/pat-pat")):
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in resp.headers  # (served over plain HTTP here)


def test_a_request_the_server_cannot_parse_gets_an_operation_outcome(settings, tmp_path):
    """Against the real server: a request line far too long for the HTTP parser."""
    import httpx

    from tests.running import running_server

    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_DEMO": "1",
           "SHAREDCARE_VAR_DIR": str(tmp_path / "var"), "SHAREDCARE_KEYS_DIR": str(settings.keys_dir),
           "SHAREDCARE_AUDIT_SEAL_SECONDS": "0"}
    with running_server(tmp_path, env, workers=1) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:  # (HTTP clients refuse such a URL)
            sock.sendall(b"GET /fhir/Patient?name=" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/fhir+json" in head.lower(), head
        r = httpx.Response(400, content=body, headers={"content-type": "application/fhir+json"})
        assert_outcome(r, 400, "could not be read", "POST [type]/_search")
