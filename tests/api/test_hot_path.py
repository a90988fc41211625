"""The hot path costs only what it must: a consented read by id is one SELECT (the resource with the facts the
policy needs), a create two statements on PostgreSQL (the facts, then the record with its audit row), with the
token's verification and revocation state held between requests; a pooled connection the database dropped is
retried (a read) or answered 503 (a write), not pinged before every request; no pydantic model is built on the way.
On SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from sqlalchemy import event, text

from service.api.pipeline import handle
from service.fhir.request import FhirRequest


def _statements(services: Any) -> tuple[list[str], Any]:
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    for engine in services.db.engines:
        event.listen(engine, "before_cursor_execute", listen)

    def stop() -> None:
        for engine in services.db.engines:
            event.remove(engine, "before_cursor_execute", listen)
    return seen, stop


def test_a_consented_read_is_one_select(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")
    assert client.get("/fhir/Patient/pat-pat", headers=nina).status_code == 200  # (the token is verified once)
    seen, stop = _statements(demo)
    try:
        r = client.get("/fhir/Patient/pat-pat", headers=nina)
    finally:
        stop()
    assert r.status_code == 200 and r.json()["id"] == "pat-pat"
    selects = [s for s in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(selects) == 1, selects
    assert "care_relationship" in selects[0] and "break_glass" in selects[0]  # the policy's facts came with it
    assert not [s for s in seen if "auth_revoked" in s]  # revocation: the process-wide cache


OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "Body weight"},
               "subject": {"reference": "Patient/pat-pat"}, "valueQuantity": {"value": 72.5, "unit": "kg"}}


def test_a_create_asks_about_its_patient_once(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    """The policy's facts about the patient also say the Patient exists: its reference needs no lookup of its
    own; a reference to anything else still does, and one to nothing is still refused."""
    nina = auth_headers("nurse.nina")
    seen, stop = _statements(demo)
    try:
        r = client.post("/fhir/Observation", headers=nina, json=OBSERVATION)
    finally:
        stop()
    assert r.status_code == 201, r.text
    lookups = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM resource" in s
               and "care_relationship" not in s]
    assert lookups == [], lookups  # (the facts statement carries the existence of Patient/pat-pat)
    if demo.db.is_postgres:  # the record, its index rows and its audit row: one statement, no BEGIN or COMMIT
        writes = [s for s in seen if "INSERT INTO resource" in s or "INSERT INTO audit_log" in s
                  or s.strip().upper() in ("BEGIN", "COMMIT")]
        assert len(writes) == 1 and "INSERT INTO audit_log" in writes[0] and 'INSERT INTO "sp_token"' in writes[0]
    seen, stop = _statements(demo)
    try:
        r = client.post("/fhir/Observation", headers=nina, json={
            **OBSERVATION, "performer": [{"reference": "Practitioner/no-such-practitioner"}]})
    finally:
        stop()
    assert r.status_code == 422 and "no-such-practitioner" in r.text, r.text
    assert [s for s in seen if "care_relationship" not in s and "FROM resource" in s]  # looked up on its own


def test_a_dropped_connection_is_retried_not_pinged(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    if not demo.db.is_postgres:
        pytest.skip("a database server that can drop connections")
    nina = auth_headers("nurse.nina")
    assert client.get("/fhir/Patient/pat-pat", headers=nina).status_code == 200
    try:
        _drop_every_connection(demo)  # (the server drops every connection of ours: a restart, a failover)
        for _ in range(3):
            r = client.get("/fhir/Patient/pat-pat", headers=nina)
            assert r.status_code == 200, r.text
            assert client.get("/fhir/CarePlan?subject=Patient/pat-pat", headers=nina).status_code == 200
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
               "subject": {"reference": "Patient/pat-pat"}}
        _drop_every_connection(demo)
        first = client.post("/fhir/Observation", json=obs, headers=nina)  # a write is not retried (it may have
        assert first.status_code in (201, 503), first.text                # committed): 503, Retry-After at worst
        assert first.status_code == 201 or first.headers["retry-after"]
        assert client.post("/fhir/Observation", json=obs, headers=nina).status_code == 201
    finally:  # (the next tests on this database start with fresh pools, not connections the drop killed)
        demo.db.dispose()


def _drop_every_connection(demo: Any) -> None:
    """From a connection of the test's own, outside the service's pools (a pooled one may be one the last drop
    killed)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    admin = create_engine(demo.db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND pid <> pg_backend_pid()"))
    admin.dispose()


def test_no_pydantic_model_is_built_for_a_read(demo, auth_headers):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")

    def req() -> FhirRequest:
        return FhirRequest(method="GET", path="Patient/pat-pat", headers={k.lower(): v for k, v in nina.items()})

    assert handle(req(), demo).status == 200
    called: set[str] = set()

    def watch(frame: Any, what: str, arg: Any) -> None:
        if what == "call":
            name = frame.f_code.co_filename
            if "/pydantic/" in name or "/fhir/resources/" in name or "/fhir_core/" in name \
                    or "/service/validation/structure.py" in name:  # (the write path's validator, for the control)
                called.add(f"{name}:{frame.f_code.co_name}")

    sys.setprofile(watch)
    try:
        resp = handle(req(), demo)
    finally:
        sys.setprofile(None)
    assert resp.status == 200
    assert not called, sorted(called)[:10]
    # (and a write does validate: the profile sees the validator then, so the watch above can see it)
    body = b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, ' \
           b'"subject": {"reference": "Patient/pat-pat"}}'
    sys.setprofile(watch)
    try:
        created = handle(FhirRequest(method="POST", path="Observation", headers={k.lower(): v for k, v in nina.items()},
                                     body=body, content_type="application/fhir+json"), demo)
    finally:
        sys.setprofile(None)
    assert created.status == 201 and called
