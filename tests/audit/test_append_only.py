"""AuditEvents cannot be changed or deleted through the API; partners may send new ones, kept as sent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlalchemy import select

from service.api.pipeline import handle
from service.audit.tables import audit_log
from service.fhir.request import FhirRequest
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


def test_a_partner_may_post_an_audit_event_kept_as_sent_and_never_an_access_by_us(client, services, auth_headers):
    sent = {"resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
            "action": "R", "recorded": "2024-05-01T10:00:00Z", "outcome": "0",
            "agent": [{"who": {"display": "GP system"}, "requestor": True}],
            "source": {"observer": {"display": "GP system"}},
            "entity": [{"what": {"reference": "Patient/abc"}, "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}]}
    r = client.post("/fhir/AuditEvent", json=sent, headers=auth_headers(client="gp-system"))
    assert r.status_code == 201, r.text
    stored = r.json()
    # as sent (its own time kept), with when we received it and from whom
    assert stored["type"]["code"] == "110106" and stored["recorded"] == "2024-05-01T10:00:00Z"
    assert stored["meta"]["source"] == "urn:sharedcare:client:gp-system"
    assert stored["meta"]["lastUpdated"] > "2026"
    assert client.get(f"/fhir/AuditEvent/{stored['id']}").json() == stored
    assert {e["resource"]["id"] for e in client.get("/fhir/AuditEvent?patient=Patient/abc").json()["entry"]} >= \
        {stored["id"]}
    # the person's access log never shows it as an access by us (admin.ada may read it)
    client.post("/fhir/Patient", json={**patient(), "id": "abc"})
    client.put("/fhir/Patient/abc", json={**patient(), "id": "abc"})
    log = client.get("/fhir/Patient/abc/$access-log").json()
    shown = [p["valueReference"]["reference"] for a in log["parameter"] if a["name"] == "access"
             for p in a["part"] if p["name"] == "event"]
    assert f"AuditEvent/{stored['id']}" not in shown and shown  # (the PUT that created Patient/abc is there)


def test_concurrent_requests_are_each_audited_once_and_the_log_verifies(client, services, tmp_path):
    from service.audit.seal import load_key, seal_all
    from service.audit.verify import verify

    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    base_ctx = staff_context(practitioner="Practitioner/p1", organisation="Organization/o1")
    request_ids = [f"concurrent-{i}" for i in range(80)]

    def work(i: int) -> int:
        ctx = replace(base_ctx, request_id=request_ids[i])
        if i % 5 == 0:  # 400: no body
            return handle(FhirRequest("PUT", f"Patient/{pid}", body=None), services, ctx).status
        return handle(FhirRequest("GET", f"Patient/{pid}"), services, ctx).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(work, range(80)))
    assert statuses.count(200) == 64 and statuses.count(400) == 16
    with services.db.read() as conn:
        ids = [r[0] for r in conn.execute(select(audit_log.c.request_id).where(
            audit_log.c.request_id.like("concurrent-%")))]
    assert sorted(ids) == sorted(request_ids)  # every request once: none lost, none twice
    settings = services.settings.model_copy(update={"audit_anchor": tmp_path / "anchor.jsonl"})
    assert sum(s.count for s in seal_all(services.db, settings, margin_us=0)) == 81
    with services.db.read() as conn:
        report = verify(conn, load_key(settings), settings.anchor_path)
    assert report.ok, report.problems
    assert report.rows == 81 and report.unsealed == 0
