"""Break-glass end to end: who may, what it opens, for how long, how every access is flagged and audited,
and the IG lead's review of it. Both databases."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import update

from service.policy.tables import break_glass as BG
from tests.policy.support import BTG, PAT_NHS, consent, ids, observation


def _queue(who) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    body = who["iris"].get("/fhir/$break-glass-queue?status=all").json()
    out = []
    for p in body["parameter"]:
        if p["name"] == "grant":
            out.append({q["name"]: next((v for k, v in q.items() if k.startswith("value")), q.get("part"))
                        for q in p["part"]})
    return out


def _events(who, **query: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    body = who["iris"].get("/fhir/AuditEvent", params={**query, "_count": "100"}).json()
    return [e["resource"] for e in body.get("entry", []) if e["resource"]["resourceType"] == "AuditEvent"]


def test_break_glass_opens_a_time_limited_audited_reviewed_grant(who, demo):
    assert who["wes"].get("/fhir/Patient/pat-pat").status_code == 404
    # a reason is required, and only roles configured for it may break glass
    r = who["wes"].get("/fhir/Patient/pat-pat", headers={"X-Purpose-Of-Use": "BTG"})
    assert r.status_code == 400 and "X-Break-Glass-Reason" in r.json()["issue"][0]["diagnostics"]
    assert who["sam"].get("/fhir/Patient/pat-paula", headers=BTG).status_code == 403
    assert who["pat"].get("/fhir/Patient/pat-pat", headers=BTG).status_code == 403
    # ward.wes breaks glass: finds Pat by NHS number and reads her record
    found = who["wes"].get(f"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{PAT_NHS}", headers=BTG)
    assert ids(found.json()) == ["pat-pat"]
    assert who["wes"].get("/fhir/CarePlan/careplan-pat-1", headers=BTG).status_code == 200
    # the grant stays open without the headers, for that patient only
    assert who["wes"].get("/fhir/CarePlan/careplan-pat-1").status_code == 200
    assert who["wes"].get("/fhir/Patient/pat-paula").status_code == 404
    assert ids(who["wes"].get("/fhir/Patient").json()) == ["pat-pat"]
    [grant] = _queue(who)
    assert grant["patient"]["reference"] == "Patient/pat-pat" and grant["status"] == "pending"
    assert grant["reason"] == BTG["X-Break-Glass-Reason"] and grant["accesses"] >= 4 and grant["open"] is True
    # every access is flagged BTG with the reason in its AuditEvent; the opening has its own event
    reads = [e for e in _events(who, patient="Patient/pat-pat", purpose="BTG")
             if any(a.get("altId") == "ward.wes" for a in e["agent"]) and e["outcome"] == "0"]
    assert len(reads) >= 4
    assert all(p["text"] == BTG["X-Break-Glass-Reason"] for e in reads for p in e["purposeOfEvent"]
               if p["coding"][0]["code"] == "BTG")
    assert any(e["type"]["code"] != "rest" for e in reads)  # the break-glass event itself
    log = who["pat"].get("/fhir/Patient/pat-pat/$access-log").json()
    assert any(p["name"] == "breakGlass" and p["valueBoolean"] for a in log["parameter"] if a["name"] == "access"
               for p in a["part"])
    # the IG lead reviews and closes it: access ends
    r = who["iris"].post("/fhir/$break-glass-review", json={"resourceType": "Parameters", "parameter": [
        {"name": "grant", "valueString": grant["id"]}, {"name": "outcome", "valueCode": "appropriate"},
        {"name": "note", "valueString": "Emergency admission confirmed"}]})
    assert r.status_code == 200, r.text
    assert who["wes"].get("/fhir/CarePlan/careplan-pat-1").status_code == 404


def test_a_grant_expires(who, demo):
    assert who["wes"].get("/fhir/Patient/pat-pat", headers=BTG).status_code == 200
    with demo.db.write() as conn:
        conn.execute(update(BG).values(opened_us=BG.c.opened_us - 10**10, expires_us=BG.c.opened_us + 1))
    assert who["wes"].get("/fhir/Patient/pat-pat").status_code == 404


def test_break_glass_overrides_an_objection_but_not_restricted_labels(who, policy):
    gp = who["ada"].post("/fhir/Observation", json=observation("pat-pat", "Diabetes review")).json()
    v = who["ada"].post("/fhir/Observation", json=observation(
        "pat-pat", "HIV", labels=(("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "V"),))).json()
    assert who["pat"].post("/fhir/Consent", json=consent("pat-pat", {"type": "deny"})).status_code == 201
    assert who["nina"].get(f"/fhir/Observation/{gp['id']}").status_code == 403
    assert who["nina"].get(f"/fhir/Observation/{gp['id']}", headers=BTG).status_code == 200
    assert who["nina"].get(f"/fhir/Observation/{v['id']}", headers=BTG).status_code == 403
    # nina is on Pat's care team: the grant exists only because the objection was overridden
    assert [g["patient"]["reference"] for g in _queue(who)] == ["Patient/pat-pat"]
    # a deployment may refuse to let break-glass override objections
    policy.settings = replace(policy.settings, btg_overrides_objections=False)
    try:
        r = who["gary"].get(f"/fhir/Observation/{gp['id']}")  # the GP wrote it: always
        assert r.status_code == 200
        assert who["cara"].get(f"/fhir/Observation/{gp['id']}", headers={**BTG, "X-Purpose-Of-Use": "TREAT"}
                               ).status_code == 403
    finally:
        policy.settings = replace(policy.settings, btg_overrides_objections=True)


def test_break_glass_search_opens_grants_for_the_patients_returned(who):
    r = who["wes"].get("/fhir/Patient?_total=accurate", headers=BTG)
    assert r.json()["total"] == 2
    assert sorted(g["patient"]["reference"] for g in _queue(who)) == ["Patient/pat-pat", "Patient/pat-paula"]
