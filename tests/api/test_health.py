"""Probes: /healthz (the process is alive) and /readyz (the database answers; 503 otherwise). With the
database gone, FHIR requests get a 503 OperationOutcome with Retry-After, never a stack trace."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient

from service.db import Database
from tests.api.support import assert_outcome
from tests.conftest import make_auth_headers


def test_healthz_and_readyz(anon_client):  # type: ignore[no-untyped-def]
    alive = anon_client.get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    ready = anon_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "reachable"
    assert anon_client.post("/healthz").status_code == 405


def test_readyz_is_503_and_fhir_requests_503_when_the_database_is_unreachable(clean_services, settings):
    from service.api.app import create_app

    headers = make_auth_headers(clean_services)
    gone = settings.model_copy(  # nothing listens
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/nowhere"})
    services = replace(clean_services, db=Database(gone))
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False, headers=headers) as c:
        assert c.get("/healthz").status_code == 200  # alive all the same
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
        for r in (c.get("/fhir/Patient/x"), c.post("/fhir/Patient", json={"resourceType": "Patient"})):
            body = assert_outcome(r, 503, "database")
            assert r.headers.get("retry-after") and "Traceback" not in r.text and "psycopg" not in r.text
            assert body["issue"][0]["code"] == "transient"
    services.db.dispose()
