"""A create of a type someone subscribes to: on PostgreSQL a plain create is held to go with its audit row as one
statement (service/held.py); with an active subscription to its type the statement writes nothing, and the
record, its delivery and its audit row go in one transaction instead. On SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select

from service.audit.tables import audit_log
from service.storage.tables import resource
from tests.api.test_hot_path import OBSERVATION
from tests.subscriptions.test_delivery import settle, subscribe, subscription


def test_a_subscribed_create_is_stored_once_delivered_and_audited_once(client, demo, quick, receivers):  # type: ignore[no-untyped-def]
    rx = receivers()
    sub = subscribe(client, subscription(rx.url, criteria="Observation?subject=Patient/pat-pat"))
    r = client.post("/fhir/Observation", json=OBSERVATION)
    assert r.status_code == 201, r.text
    [got] = rx.wait(1)
    assert got.path == f"/hook/Observation/{r.json()['id']}"
    assert [(d.event, d.state) for d in settle(demo, sub["id"])] == [("create", "done")]
    with demo.db.read() as conn:
        stored = conn.execute(select(func.count()).select_from(resource).where(
            resource.c.res_type == "Observation", resource.c.res_id == r.json()["id"])).scalar()
        rows = conn.execute(select(audit_log.c.status).where(
            audit_log.c.request_id == r.headers["x-request-id"])).all()
    assert stored == 1 and [x.status for x in rows] == [201]
    # a type nobody subscribes to is not held up by it
    other = client.post("/fhir/Condition", json={"resourceType": "Condition", "subject": {"reference": "Patient/pat-pat"},
                                                 "code": {"text": "Falls"}})
    assert other.status_code == 201, other.text
    assert len(rx.requests) == 1
