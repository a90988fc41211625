"""R4 rest-hook Subscriptions, end to end over HTTP against a real database (SQLite and PostgreSQL): a Subscription
is accepted as `active`, a matching create or update reaches a local receiver with the configured headers in the
payload kind asked for, failures are retried with backoff and end in status `error`, a subscriber is told only of
what they may see, and every delivery is audited."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import select

from service.audit.tables import audit_log
from service.subscriptions.spec import PAYLOAD_CONTENT
from service.subscriptions.tables import subscription_delivery as D

FHIR = "application/fhir+json"


def subscription(endpoint: str, criteria: str = "CarePlan?subject=Patient/pat-pat", *, payload: str | None = FHIR,
                 content: str | None = None, headers: list[str] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload is not None:
        channel["payload"] = payload
    if content is not None:
        channel["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]}
    if headers is not None:
        channel["header"] = headers
    return {"resourceType": "Subscription", "status": "requested", "reason": "Keep the GP system in step",
            "criteria": criteria, "channel": channel}


def careplan(patient: str = "pat-pat", title: str = "Falls prevention") -> dict[str, Any]:
    return {"resourceType": "CarePlan", "status": "active", "intent": "plan", "title": title,
            "subject": {"reference": f"Patient/{patient}"}}


def subscribe(client: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.post("/fhir/Subscription", json=body, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliveries(services: Any, sub_id: str) -> list[Any]:
    with services.db.read() as conn:
        return conn.execute(select(D).where(D.c.subscription_id == sub_id).order_by(D.c.id)).all()


def settle(services: Any, sub_id: str, timeout: float = 15.0) -> list[Any]:
    """The subscription's deliveries once none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        rows = deliveries(services, sub_id)
        if rows and all(r.state != "pending" for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def notification_audit(services: Any) -> list[Any]:
    with services.db.read() as conn:
        return conn.execute(select(audit_log).where(audit_log.c.interaction == "subscription-notification")
                            .order_by(audit_log.c.seq)).all()


def test_accepted_subscription_is_active_and_full_resource_is_put_with_headers(client, demo, quick, receivers):
    rx = receivers()
    sub = subscribe(client, subscription(rx.url, headers=["Authorization: Bearer partner-secret", "X-Partner: gp-1"]))
    assert sub["status"] == "active"
    assert client.get(f"/fhir/Subscription/{sub['id']}").json()["status"] == "active"

    plan = client.post("/fhir/CarePlan", json=careplan()).json()
    client.post("/fhir/CarePlan", json=careplan("pat-paula"))  # another person's plan: not in the criteria
    got = rx.wait(1)
    assert len(got) == 1
    first = got[0]
    assert first.method == "PUT"
    assert first.path == f"/hook/CarePlan/{plan['id']}"  # R4: with a payload the endpoint is a service base
    assert first.headers["authorization"] == "Bearer partner-secret"
    assert first.headers["x-partner"] == "gp-1"
    assert first.headers["content-type"] == FHIR
    body = orjson.loads(first.body)
    assert body["id"] == plan["id"] and body["meta"]["versionId"] == "1" and body["title"] == "Falls prevention"

    plan["title"] = "Falls prevention, reviewed"
    assert client.put(f"/fhir/CarePlan/{plan['id']}", json=plan).status_code == 200
    got = rx.wait(2)
    assert len(got) == 2
    assert orjson.loads(got[1].body)["meta"]["versionId"] == "2"
    assert orjson.loads(got[1].body)["title"] == "Falls prevention, reviewed"
    rows = settle(client.app.state.services, sub["id"])
    assert [(r.event, r.state, r.attempts, r.last_status) for r in rows] == [("create", "done", 1, 200),
                                                                             ("update", "done", 1, 200)]
    time.sleep(0.3)
    assert len(rx.requests) == 2  # nothing for Paula's plan


def test_empty_payload_is_a_post_with_no_body(client, demo, quick, receivers):
    rx = receivers()
    subscribe(client, subscription(rx.url, payload=None, headers=["X-Token: t1"]))
    client.post("/fhir/CarePlan", json=careplan())
    (got,) = rx.wait(1)
    assert got.method == "POST" and got.path == "/hook"
    assert got.body == b""
    assert got.headers["x-token"] == "t1"
    assert "content-type" not in got.headers


def test_id_only_payload_names_the_resource_without_its_content(client, demo, quick, receivers):
    rx = receivers()
    subscribe(client, subscription(rx.url, content="id-only"))
    plan = client.post("/fhir/CarePlan", json=careplan(title="Private title")).json()
    (got,) = rx.wait(1)
    assert got.method == "POST" and got.path == "/hook"
    assert got.headers["content-type"] == FHIR
    bundle = orjson.loads(got.body)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"http://testserver/fhir/CarePlan/{plan['id']}"
    assert entry["request"] == {"method": "POST", "url": "CarePlan"}
    assert entry["response"]["location"] == f"CarePlan/{plan['id']}/_history/1"
    assert "resource" not in entry
    assert b"Private title" not in got.body


def test_empty_content_extension_with_a_payload_type_sends_no_body(client, demo, quick, receivers):
    rx = receivers()
    subscribe(client, subscription(rx.url, content="empty"))
    client.post("/fhir/CarePlan", json=careplan())
    (got,) = rx.wait(1)
    assert (got.method, got.path, got.body) == ("POST", "/hook", b"")


def test_a_failing_receiver_is_retried_until_it_accepts(client, demo, quick, receivers):
    rx = receivers(500, 503)  # two failures, then 200
    sub = subscribe(client, subscription(rx.url))
    started = time.monotonic()
    client.post("/fhir/CarePlan", json=careplan())
    got = rx.wait(3)
    assert [r.method for r in got] == ["PUT", "PUT", "PUT"]
    assert time.monotonic() - started >= 0.1 + 0.2  # backoff: 0.1 s, then 0.2 s
    (row,) = settle(client.app.state.services, sub["id"])
    assert (row.state, row.attempts, row.last_status) == ("done", 3, 200)
    assert client.get(f"/fhir/Subscription/{sub['id']}").json()["status"] == "active"
    audited = notification_audit(client.app.state.services)
    assert [(a.status, a.outcome) for a in audited] == [(500, 4), (503, 4), (200, 0)]


def test_repeated_failures_put_the_subscription_in_error_with_the_reason(client, demo, quick, receivers):
    rx = receivers(503, 503, 503, 503)
    sub = subscribe(client, subscription(rx.url))
    client.post("/fhir/CarePlan", json=careplan())
    rx.wait(3)
    (row,) = settle(client.app.state.services, sub["id"])
    assert (row.state, row.attempts) == ("failed", 3)
    current = client.get(f"/fhir/Subscription/{sub['id']}").json()
    assert current["status"] == "error"
    assert "3 attempts" in current["error"] and "HTTP 503" in current["error"] and rx.url in current["error"]
    # in error, nothing more is queued or sent
    client.post("/fhir/CarePlan", json=careplan(title="Another"))
    time.sleep(0.4)
    assert len(rx.requests) == 3
    assert len(deliveries(client.app.state.services, sub["id"])) == 1
    # the owner resumes it by asking again
    current["status"] = "requested"
    resumed = client.put(f"/fhir/Subscription/{sub['id']}", json=current)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active" and "error" not in resumed.json()
    client.post("/fhir/CarePlan", json=careplan(title="After resuming"))
    assert len(rx.wait(4)) == 4


def test_an_unreachable_endpoint_ends_in_error(client, demo, quick, receivers):
    rx = receivers()
    url = rx.url
    rx.close()  # nothing listens there any more
    sub = subscribe(client, subscription(url))
    client.post("/fhir/CarePlan", json=careplan())
    (row,) = settle(client.app.state.services, sub["id"])
    assert row.state == "failed" and row.last_status is None
    current = client.get(f"/fhir/Subscription/{sub['id']}").json()
    assert current["status"] == "error" and "ConnectError" in current["error"]


def test_a_subscriber_is_told_only_of_what_they_may_see(client, demo, quick, receivers, auth_headers):
    nina_rx, wes_rx = receivers(), receivers()
    nina = auth_headers("nurse.nina")  # in Pat's care team
    wes = auth_headers("ward.wes")  # acute trust: no care relationship with Pat
    nina_sub = subscribe(client, subscription(nina_rx.url), nina)
    wes_sub = subscribe(client, subscription(wes_rx.url), wes)
    wes_all = subscribe(client, subscription(wes_rx.url, criteria="CarePlan"), wes)  # every plan he may see
    plan = client.post("/fhir/CarePlan", json=careplan()).json()
    (got,) = nina_rx.wait(1)
    assert got.path.endswith(plan["id"])
    services = client.app.state.services
    settle(services, nina_sub["id"])
    time.sleep(0.3)
    assert wes_rx.requests == []
    assert deliveries(services, wes_sub["id"]) == [] and deliveries(services, wes_all["id"]) == []
    # the delivery is audited as an access by Nina to Pat's plan
    (row,) = notification_audit(services)
    assert row.agent == "Practitioner/prac-nina" and row.patient_id == "pat-pat"
    assert row.target == f"CarePlan/{plan['id']}/_history/1" and row.action == "R"
    detail = orjson.loads(row.detail)
    assert detail["subscription"] == f"Subscription/{nina_sub['id']}" and detail["endpoint"].startswith(nina_rx.url)


def test_what_was_queued_is_dropped_when_the_subscription_is_turned_off(client, demo, quick, receivers, auth_headers):
    """The subscription is looked at again when a notification is sent: turned off meanwhile, nothing goes."""
    rx = receivers()
    nina = auth_headers("nurse.nina")
    sub = subscribe(client, subscription(rx.url), nina)
    services = client.app.state.services
    hub = services.subscriptions
    hub.notifier.stop()  # hold the worker while the owner turns the subscription off
    try:
        time.sleep(0.2)
        plan = client.post("/fhir/CarePlan", json=careplan()).json()
        assert [r.state for r in deliveries(services, sub["id"])] == ["pending"]
        nina_sub = client.get(f"/fhir/Subscription/{sub['id']}", headers=nina).json()
        nina_sub["status"] = "off"
        assert client.put(f"/fhir/Subscription/{sub['id']}", json=nina_sub, headers=nina).status_code == 200
    finally:
        hub.notifier.start()
    (row,) = settle(services, sub["id"])
    assert row.state == "dropped" and "off" in row.last_error
    assert rx.requests == [] and plan["id"]


def test_deleting_a_subscription_stops_notifications(client, demo, quick, receivers):
    rx = receivers()
    sub = subscribe(client, subscription(rx.url))
    assert client.delete(f"/fhir/Subscription/{sub['id']}").status_code == 204
    client.post("/fhir/CarePlan", json=careplan())
    time.sleep(0.3)
    assert rx.requests == [] and deliveries(client.app.state.services, sub["id"]) == []


def test_a_deletion_or_a_no_longer_matching_update_notifies_no_one(client, demo, quick, receivers):
    rx = receivers()
    sub = subscribe(client, subscription(rx.url, criteria="CarePlan?status=active"))
    plan = client.post("/fhir/CarePlan", json=careplan()).json()
    rx.wait(1)
    plan["status"] = "completed"
    client.put(f"/fhir/CarePlan/{plan['id']}", json=plan)
    client.delete(f"/fhir/CarePlan/{plan['id']}")
    time.sleep(0.3)
    assert len(rx.requests) == 1
    assert len(deliveries(client.app.state.services, sub["id"])) == 1


def _object_to_the_council(client: Any, pat: dict[str, str]) -> None:
    from tests.policy.support import actor, consent

    body = consent("pat-pat", {"type": "permit", "provision": [{"type": "deny",
                                                                "actor": [actor("Organization/org-council-asc")]}]})
    r = client.post("/fhir/Consent", json=body, headers=pat)
    assert r.status_code == 201, r.text


def test_the_persons_objection_keeps_notifications_from_the_organisation(client, demo, quick, receivers,
                                                                          auth_headers):
    from tests.policy.support import observation

    nina_rx, sam_rx = receivers(), receivers()
    nina_sub = subscribe(client, subscription(nina_rx.url, "Observation?subject=Patient/pat-pat"),
                         auth_headers("nurse.nina"))
    sam_sub = subscribe(client, subscription(sam_rx.url, "Observation?subject=Patient/pat-pat"),
                        auth_headers("social.sam"))  # the council, in Pat's care team
    _object_to_the_council(client, auth_headers("patient.pat"))
    obs = client.post("/fhir/Observation", json=observation("pat-pat", "HbA1c 48")).json()
    (got,) = nina_rx.wait(1)
    assert got.path.endswith(obs["id"])
    services = client.app.state.services
    settle(services, nina_sub["id"])
    time.sleep(0.3)
    assert sam_rx.requests == [] and deliveries(services, sam_sub["id"]) == []


def test_an_objection_recorded_after_matching_stops_the_delivery(client, demo, quick, receivers, auth_headers):
    """The resource is read again as the owner when the notification is sent: what they may no longer see is
    dropped, not sent."""
    from tests.policy.support import observation

    rx = receivers()
    sub = subscribe(client, subscription(rx.url, "Observation?subject=Patient/pat-pat"), auth_headers("social.sam"))
    services = client.app.state.services
    services.subscriptions.notifier.stop()  # hold the worker while the person objects
    try:
        time.sleep(0.2)
        client.post("/fhir/Observation", json=observation("pat-pat", "HbA1c 48"))
        assert [r.state for r in deliveries(services, sub["id"])] == ["pending"]
        _object_to_the_council(client, auth_headers("patient.pat"))
    finally:
        services.subscriptions.notifier.start()
    (row,) = settle(services, sub["id"])
    assert row.state == "dropped" and "no longer visible to social.sam" in row.last_error
    time.sleep(0.2)
    assert rx.requests == [] and notification_audit(services) == []


def test_nothing_is_sent_after_the_subscriptions_end(client, demo, quick, receivers):
    from datetime import UTC, datetime, timedelta

    rx = receivers()
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sub = subscribe(client, {**subscription(rx.url), "end": soon})
    client.post("/fhir/CarePlan", json=careplan())
    assert len(rx.wait(1)) == 1
    time.sleep(1.6)
    client.post("/fhir/CarePlan", json=careplan(title="After the end"))
    time.sleep(0.3)
    assert len(rx.requests) == 1 and len(deliveries(client.app.state.services, sub["id"])) == 1


def test_a_server_with_no_subscriptions_polls_nothing(app, services):
    """Each serve process runs the delivery worker only once there is something to send or watch."""
    import threading

    def running() -> bool:
        return any(t.name == "subscription-delivery" and t.is_alive() for t in threading.enumerate())

    services.subscriptions.notifier.stop()  # (a worker an earlier test started ends)
    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    services.subscriptions.notifier.serve()  # what making a serve process's app does
    time.sleep(0.1)
    assert not running()


def test_header_values_are_kept_by_the_server_not_shown_in_the_subscription(client, demo, quick, receivers,
                                                                           auth_headers):
    rx = receivers()
    gp = auth_headers(client="gp-system")
    sub = subscribe(client, subscription(rx.url, headers=["Authorization: Bearer inbox-secret", "X-Partner: gp-1"]),
                    gp)
    assert sub["channel"]["header"] == ["Authorization: ***", "X-Partner: ***"]
    stored = client.get(f"/fhir/Subscription/{sub['id']}").text  # anyone who may read Subscriptions
    assert "inbox-secret" not in stored and "gp-1" not in stored
    assert "inbox-secret" not in client.get("/fhir/Subscription").text
    # written back as read (paused, resumed), the values kept are kept; a new value replaces its own
    sub["status"] = "off"
    assert client.put(f"/fhir/Subscription/{sub['id']}", json=sub, headers=gp).status_code == 200
    sub["status"] = "requested"
    sub["channel"]["header"] = ["Authorization: ***", "X-Partner: gp-2"]
    resumed = client.put(f"/fhir/Subscription/{sub['id']}", json=sub, headers=gp)
    assert resumed.status_code == 200, resumed.text
    client.post("/fhir/CarePlan", json=careplan())
    (got,) = rx.wait(1)
    assert got.headers["authorization"] == "Bearer inbox-secret" and got.headers["x-partner"] == "gp-2"
    # a name with nothing kept needs its value
    sub = resumed.json()
    sub["channel"]["header"] = ["X-New: ***"]
    r = client.put(f"/fhir/Subscription/{sub['id']}", json=sub, headers=gp)
    assert r.status_code == 422 and "no value kept" in r.text
