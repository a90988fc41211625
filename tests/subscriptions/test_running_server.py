"""Subscriptions on the service as an operator runs it (`sharedcare serve` in a subprocess, its own delivery
worker per process), driven through fhirpy as the GP practice's system: a delivery that cannot be made is retried,
survives a restart (the queue is in the database) and reaches the local receiver once it listens. Both
databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.conftest import partner_token
from tests.running import free_port, running_server
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_delivery import FHIR

QUICK = {"SHAREDCARE_SUBSCRIPTION_POLL_SECONDS": "0.1", "SHAREDCARE_SUBSCRIPTION_RETRY_SECONDS": "0.3",
         "SHAREDCARE_SUBSCRIPTION_MAX_RETRY_SECONDS": "0.5", "SHAREDCARE_SUBSCRIPTION_MAX_ATTEMPTS": "1000"}


@pytest.fixture
def people(clean_services: Any) -> Any:
    from service.auth.demo import load_identities
    from service.demo.loader import load_records

    load_records(clean_services)
    load_identities(clean_services)
    return clean_services


@pytest.fixture
def home(settings: Any, tmp_path: Any) -> Iterator[tuple[Any, dict[str, str]]]:
    port = free_port()
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": f"http://127.0.0.1:{port}",
           "SHAREDCARE_DEMO": "1", "SHAREDCARE_VAR_DIR": str(tmp_path / "var"),
           "SHAREDCARE_KEYS_DIR": str(tmp_path / "keys"), **QUICK}
    yield tmp_path, {**env, "_port": str(port)}


def _observation(fhir: Any) -> Any:
    obs = fhir.resource("Observation", status="final", subject={"reference": "Patient/pat-pat"},
                        code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"})
    obs.save()
    return obs


def _subscribe(fhir: Any, endpoint: str) -> Any:
    sub = fhir.resource("Subscription", status="requested", reason="Keep the GP system in step",
                        criteria="Observation?subject=Patient/pat-pat",
                        channel={"type": "rest-hook", "endpoint": endpoint, "payload": FHIR,
                                 "header": ["Authorization: Bearer gp-inbox-secret"]})
    sub.save()
    assert sub["status"] == "active"
    return sub


def _deliveries(services: Any, sub_id: str) -> list[Any]:
    from sqlalchemy import select

    from service.subscriptions.tables import subscription_delivery as D

    with services.db.read() as conn:
        return conn.execute(select(D).where(D.c.subscription_id == sub_id)).all()


def test_a_delivery_queued_before_a_restart_is_sent_after_it(people, home):
    from fhirpy import SyncFHIRClient

    folder, env = home
    port = int(env.pop("_port"))
    receiver_port = free_port()  # nothing listens there yet: every attempt fails and is retried
    endpoint = f"http://127.0.0.1:{receiver_port}/hook"
    with running_server(folder, env, port=port, workers=1) as server:
        fhir = SyncFHIRClient(f"{server}/fhir", authorization=f"Bearer {partner_token(server)}")
        sub = _subscribe(fhir, endpoint)
        obs = _observation(fhir)
        deadline = time.monotonic() + 30
        while not any(d.attempts >= 2 for d in _deliveries(people, sub.id)) and time.monotonic() < deadline:
            time.sleep(0.2)
        (pending,) = _deliveries(people, sub.id)
        assert pending.state == "pending" and pending.attempts >= 2
    # the server is down; the job waits in the database
    rx = Receiver(port=receiver_port)
    try:
        with running_server(folder, env, port=port, workers=1):
            (got,) = rx.wait(1, timeout=30)
            assert got.method == "PUT" and got.path == f"/hook/Observation/{obs.id}"
            assert got.headers["authorization"] == "Bearer gp-inbox-secret"
            deadline = time.monotonic() + 10
            while _deliveries(people, sub.id)[0].state == "pending" and time.monotonic() < deadline:
                time.sleep(0.1)
        (done,) = _deliveries(people, sub.id)
        assert done.state == "done" and done.attempts >= 3 and done.last_status == 200
    finally:
        rx.close()
