"""What the server will not do is refused when the Subscription is written (422 with an OperationOutcome naming
the problem), and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from service.subscriptions.spec import PAYLOAD_CONTENT
from tests.subscriptions.test_delivery import subscription

HOOK = "https://partner.example.org/hook"


def _with(**changes: Any) -> dict[str, Any]:
    body = subscription(HOOK)
    for path, value in changes.items():
        node = body
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return body


CASES = [
    ("websocket channel", _with(channel__type="websocket"), "channel.type 'websocket' is not supported"),
    ("email channel", _with(channel__type="email", channel__endpoint="mailto:gp@example.org"), "only notifies by rest-hook"),
    ("no endpoint", _with(channel__endpoint=None), "channel.endpoint is required"),
    ("ftp endpoint", _with(channel__endpoint="ftp://partner.example.org/x"), "absolute http(s) URL"),
    ("relative endpoint", _with(channel__endpoint="/hook"), "absolute http(s) URL"),
    ("credentials in the endpoint", _with(channel__endpoint="https://u:p@partner.example.org/h"),
     "must not carry credentials"),
    ("xml payload", _with(channel__payload="application/fhir+xml"), "payload 'application/fhir+xml' is not supported"),
    ("unknown payload content", _with(channel___payload={"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "most"}]}),
     "payload content 'most'"),
    ("id-only without a payload type", {**subscription(HOOK, payload=None, content="id-only")},
     "needs Subscription.channel.payload"),
    ("header without a colon", _with(channel__header=["Authorization Bearer x"]), "must be 'Name: value'"),
    ("header the server sets", _with(channel__header=["Host: evil.example.org"]), "may not set 'Host'"),
    ("header with a bad name", _with(channel__header=["Bad Name: x"]), "not a valid HTTP header name"),
    ("no criteria", _with(criteria=None), "criteria is required"),
    ("criteria without a type", _with(criteria="?subject=Patient/1"), "must start with a resource type"),
    ("criteria with an unknown type", _with(criteria="Careplan?subject=Patient/1"), "must start with a resource type"),
    ("criteria on Subscription", _with(criteria="Subscription?status=active"), "Subscriptions on Subscription"),
    ("unknown search parameter", _with(criteria="CarePlan?colour=blue"), "unknown search parameter 'colour'"),
    ("sorting is not a criterion", _with(criteria="CarePlan?_sort=date"), "cannot be matched"),
    ("tag", _with(tag=[{"system": "http://example.org", "code": "seen"}]), "Subscription.tag is not supported"),
    ("status error from a client", _with(status="error"), "set by the server"),
    ("an end in the past", _with(end="2020-01-01T00:00:00Z"), "is in the past"),
]


@pytest.mark.parametrize(("case", "body", "text"), CASES, ids=[c[0] for c in CASES])
def test_refused_with_422(client, case, body, text):
    r = client.post("/fhir/Subscription", json=body)
    assert r.status_code == 422, r.text
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert text in oo["issue"][0]["diagnostics"], oo
    assert client.get("/fhir/Subscription").json().get("total", 0) == 0


def test_plain_http_is_refused_outside_loopback_unless_allowed(client, services):
    hub = services.subscriptions
    saved = hub.demo
    hub.demo = False
    try:
        r = client.post("/fhir/Subscription", json=subscription("http://partner.example.org/hook"))
        assert r.status_code == 422 and "must be https" in r.text
        assert client.post("/fhir/Subscription", json=subscription("http://127.0.0.1:9/hook")).status_code == 201
    finally:
        hub.demo = saved


def test_an_update_is_checked_too(client):
    sub = client.post("/fhir/Subscription", json=subscription(HOOK)).json()
    sub["channel"]["type"] = "sms"
    r = client.put(f"/fhir/Subscription/{sub['id']}", json=sub)
    assert r.status_code == 422 and "'sms' is not supported" in r.text
    assert client.get(f"/fhir/Subscription/{sub['id']}").json()["channel"]["type"] == "rest-hook"


def test_off_is_kept_and_requested_becomes_active(client):
    off = client.post("/fhir/Subscription", json={**subscription(HOOK), "status": "off"}).json()
    assert off["status"] == "off"
    active = client.post("/fhir/Subscription", json={**subscription(HOOK), "status": "active"}).json()
    assert active["status"] == "active"


def test_a_type_the_caller_may_not_search_is_refused(client, auth_headers):
    headers = auth_headers("nurse.nina", scope="user/Subscription.cruds user/Patient.rs")
    r = client.post("/fhir/Subscription", json=subscription(HOOK), headers=headers)
    assert r.status_code == 403, r.text
