"""AuditEvents cannot be changed or deleted through the API; partners may send new ones, which are chained."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import orjson
from sqlalchemy import select

from service.api.pipeline import handle
from service.audit.chain import lane_for, verify
from service.audit.tables import audit_chain
from service.fhir.request import FhirRequest
from service.storage.tables import resource as R
from tests.audit.support import FHIR, events, patient, staff_context, subtype


def _one_event(client):  # type: ignore[no-untyped-def]
    client.post("/fhir/Patient", json=patient())
    return events(client)[0]


def test_put_patch_delete_of_an_audit_event_are_refused_with_405(client):
    ev = _one_event(client)
    url = f"/fhir/AuditEvent/{ev['id']}"
    changed = dict(ev, outcome="8")
    attempts = [
        client.put(url, json=changed),
        client.patch(url, content='[{"op":"replace","path":"/outcome","value":"8"}]',
                     headers={"Content-Type": "application/json-patch+json"}),
        client.delete(url),
        client.delete("/fhir/AuditEvent?_id=" + ev["id"]),
        client.put("/fhir/AuditEvent?_id=" + ev["id"], json=changed),
    ]
    for r in attempts:
        assert r.status_code == 405, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert "append-only" in body["issue"][0]["diagnostics"]
        assert r.headers["allow"] == "GET, POST"
    after = client.get(url)
    assert after.status_code == 200 and after.json() == ev
    # each refusal was itself audited
    trail = events(client)
    assert [(subtype(e), e["outcome"]) for e in trail[-6:-1]] == [
        ("update", "4"), ("patch", "4"), ("delete", "4"), ("delete", "4"), ("update", "4")]


def test_deleting_an_audit_event_inside_a_transaction_fails_the_whole_transaction(client):
    ev = _one_event(client)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": patient(),
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"AuditEvent/{ev['id']}"}}]}
    r = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
    assert r.status_code == 405, r.text
    assert "append-only" in r.text
    assert client.get(f"/fhir/AuditEvent/{ev['id']}").status_code == 200
    assert len(client.get(f"/fhir/AuditEvent/{ev['id']}/_history").json()["entry"]) == 1


def test_a_partner_may_post_an_audit_event_and_it_is_chained(client, services):
    sent = {"resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
            "action": "R", "recorded": "2024-05-01T10:00:00Z", "outcome": "0",
            "agent": [{"who": {"display": "GP system"}, "requestor": True}],
            "source": {"observer": {"display": "GP system"}},
            "entity": [{"what": {"reference": "Patient/abc"}, "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}]}
    r = client.post("/fhir/AuditEvent", json=sent)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["type"]["code"] == "110106" and stored["recorded"] == "2024-05-01T10:00:00Z"
    with services.db.read() as conn:
        report = verify(conn)
    assert report.ok, report.problems
    assert report.events == 2  # the partner's event and our record of its create
    trail = events(client)
    assert {e["id"] for e in trail} >= {stored["id"]}
    assert [subtype(e) for e in trail if e["id"] != stored["id"]] == ["create"]


def test_concurrent_requests_are_all_audited_and_the_chains_stay_intact(client, services):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]

    # Every real request gets its own RequestContext (and request id) from authentication; the lane is
    # crc32(request id) % 16. The ids here are fixed, so which lanes are used is deterministic (sharing one
    # context between all requests would put every event in one lane: 1 lane in 16 runs).
    base_ctx = staff_context(practitioner="Practitioner/p1", organisation="Organization/o1")
    request_ids = [f"concurrent-{i}" for i in range(80)]
    expected_lanes = {lane_for(r) for r in request_ids}
    assert len(expected_lanes) > 1

    def work(i: int) -> int:
        ctx = replace(base_ctx, request_id=request_ids[i])
        if i % 5 == 0:  # 400: no body
            return handle(FhirRequest("PUT", f"Patient/{pid}", body=None), services, ctx).status
        return handle(FhirRequest("GET", f"Patient/{pid}"), services, ctx).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(work, range(80)))
    assert statuses.count(200) == 64 and statuses.count(400) == 16
    with services.db.read() as conn:
        report = verify(conn)
        chained = dict(conn.execute(select(audit_chain.c.event_id, audit_chain.c.lane)).all())
        stored = {r.res_id: orjson.loads(r.content) for r in conn.execute(
            select(R.c.res_id, R.c.content).where(R.c.res_type == "AuditEvent"))}
    assert report.ok, report.problems
    assert report.events == 81
    assert report.lanes >= len(expected_lanes)
    # each request's event sits in the lane its own request id chooses
    lanes_by_request = {}
    for event_id, event in stored.items():
        rid = next(e["what"]["identifier"]["value"] for e in event["entity"]
                   if e["what"].get("identifier", {}).get("value") and e.get("type", {}).get("code") == "XrequestId")
        lanes_by_request[rid] = chained[event_id]
    assert {r: lanes_by_request[r] for r in request_ids} == {r: lane_for(r) for r in request_ids}
