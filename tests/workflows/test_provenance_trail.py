"""Every create and update of an assessment, plan, goal or care team records a Provenance in the same
transaction: who (and for which organisation), what activity, why; the plan shows who said what."""

from __future__ import annotations

from tests.workflows.support import (
    LEVEL,
    ans,
    coding,
    finished_assessment,
    grp,
    provenance_for,
    save_body,
    summary,
    transition,
)


def test_the_assessment_trail_names_who_did_what_for_which_organisation(users):
    url = finished_assessment(users)
    ref = url.removeprefix("/fhir/")
    trail = [summary(p) for p in provenance_for(users["ada"], ref)]
    assert trail == [
        ("1", "start-assessment", "Practitioner/prac-nina", "Organization/org-community-trust"),
        ("2", "save-answers", "Practitioner/prac-sam", "Organization/org-council-asc"),
        ("3", "save-answers", "Practitioner/prac-nina", "Organization/org-community-trust"),
        ("4", "complete-assessment", "Practitioner/prac-nina", "Organization/org-community-trust"),
    ]
    first = provenance_for(users["ada"], ref)[0]
    assert first["reason"][0]["coding"] == [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                             "code": "TREAT"}]
    assert {"role": "source", "what": {"reference": "Patient/pat-pat"}} in first["entity"]
    assert first["recorded"]
    amend = save_body(4, grp("health", grp("health.falls", ans("health.falls.need", coding(LEVEL, "high")))),
                      reason="Fell again at the weekend")
    assert users["sam"].post(f"{url}/$amend", json=amend).status_code == 200
    last = provenance_for(users["ada"], ref)[-1]
    assert summary(last) == ("5", "amend-assessment", "Practitioner/prac-sam", "Organization/org-council-asc")
    assert last["reason"][0]["text"] == "Fell again at the weekend"


def test_the_plan_and_its_goals_point_back_to_the_assessment_they_came_from(users):
    url = finished_assessment(users)
    plan = users["nina"].post(f"{url}/$generate-careplan").json()
    created = provenance_for(users["ada"], f"CarePlan/{plan['id']}")
    assert [summary(p) for p in created] == [
        ("1", "generate-careplan", "Practitioner/prac-nina", "Organization/org-community-trust")]
    assert created[0]["entity"] == [{"role": "source", "what": {"reference": f"{url.removeprefix('/fhir/')}/_history/4"}}]
    for goal in plan["goal"]:
        assert [summary(p)[1] for p in provenance_for(users["ada"], goal["reference"])] == ["generate-careplan"]
    r = users["cara"].post(f"/fhir/CarePlan/{plan['id']}/$transition", json=transition("active"))
    assert r.status_code == 200
    agreed = provenance_for(users["ada"], f"CarePlan/{plan['id']}")[-1]
    assert summary(agreed) == ("2", "careplan-active", "Practitioner/prac-cara", "Organization/org-community-trust")


def test_plain_rest_writes_get_provenance_and_provenance_gets_none(users):
    goal = {"resourceType": "Goal", "lifecycleStatus": "proposed", "description": {"text": "Walk to the shop"},
            "subject": {"reference": "Patient/pat-pat"}}
    r = users["nina"].post("/fhir/Goal", json=goal)
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    r = users["sam"].put(f"/fhir/Goal/{gid}", json={**goal, "id": gid, "lifecycleStatus": "accepted"})
    assert r.status_code == 200
    trail = [summary(p) for p in provenance_for(users["ada"], f"Goal/{gid}")]
    assert trail == [("1", "CREATE", "Practitioner/prac-nina", "Organization/org-community-trust"),
                     ("2", "UPDATE", "Practitioner/prac-sam", "Organization/org-council-asc")]
    # Provenance written by the server is not itself tracked (no Provenance of Provenance)
    before = users["ada"].get("/fhir/Provenance?_count=1000").json()["total"]
    prov = provenance_for(users["ada"], f"Goal/{gid}")[0]
    assert not provenance_for(users["ada"], f"Provenance/{prov['id']}")
    # a refused write leaves no Provenance behind
    r = users["nina"].post("/fhir/QuestionnaireResponse/" + "x" * 3 + "/$complete")
    assert r.status_code == 404
    assert users["ada"].get("/fhir/Provenance?_count=1000").json()["total"] == before


def test_operations_are_audited_under_the_caller(users):
    url = finished_assessment(users)
    events = users["ada"].get("/fhir/AuditEvent?_count=1000").json().get("entry", [])
    rid = url.rsplit("/", 1)[1]
    mine = [e["resource"] for e in events if rid in str(e["resource"].get("entity", []))
            and "prac-sam" in str(e["resource"].get("agent", []))]
    assert mine, "sam's $save-answers must be in the audit trail"


def test_patch_and_transaction_writes_get_provenance_too(users):
    goal = {"resourceType": "Goal", "lifecycleStatus": "proposed", "description": {"text": "Walk to the shop"},
            "subject": {"reference": "Patient/pat-pat"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:3d1f6c1e-0000-4000-8000-000000000001", "resource": goal,
         "request": {"method": "POST", "url": "Goal"}}]}
    r = users["sam"].post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    gid = r.json()["entry"][0]["response"]["location"].split("Goal/", 1)[1].split("/")[0]
    r = users["nina"].patch(f"/fhir/Goal/{gid}", json=[{"op": "replace", "path": "/lifecycleStatus",
                                                        "value": "accepted"}],
                            headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert [summary(p) for p in provenance_for(users["ada"], f"Goal/{gid}")] == [
        ("1", "CREATE", "Practitioner/prac-sam", "Organization/org-council-asc"),
        ("2", "UPDATE", "Practitioner/prac-nina", "Organization/org-community-trust")]


def test_plan_changes_record_the_reason_and_the_goals_follow_with_their_own_provenance(users):
    url = finished_assessment(users)
    plan = users["nina"].post(f"{url}/$generate-careplan").json()
    pid = plan["id"]
    assert users["cara"].post(f"/fhir/CarePlan/{pid}/$transition", json=transition("active")).status_code == 200
    r = users["cara"].post(f"/fhir/CarePlan/{pid}/$transition", json=transition("on-hold", "Pat is in hospital"))
    assert r.status_code == 200, r.text
    held = provenance_for(users["ada"], f"CarePlan/{pid}")[-1]
    assert summary(held) == ("3", "careplan-on-hold", "Practitioner/prac-cara", "Organization/org-community-trust")
    assert held["reason"][0]["text"] == "Pat is in hospital"
    assert held["activity"]["coding"][0]["code"] == "UPDATE"
    for g in plan["goal"]:
        trail = provenance_for(users["ada"], g["reference"])
        assert [summary(p)[1] for p in trail] == ["generate-careplan", "careplan-active", "careplan-on-hold"]
        assert trail[-1]["reason"][0]["text"] == "Pat is in hospital"
        assert trail[-1]["entity"] == [{"role": "source", "what": {"reference": f"CarePlan/{pid}/_history/3"}}]


def test_a_purpose_of_use_other_than_treatment_is_the_provenance_reason(users, auth_headers):
    r = users["nina"].post("/fhir/Goal", headers={"X-Purpose-Of-Use": "ETREAT"}, json={
        "resourceType": "Goal", "lifecycleStatus": "proposed", "description": {"text": "Safe discharge"},
        "subject": {"reference": "Patient/pat-pat"}})
    assert r.status_code == 201, r.text
    prov = provenance_for(users["ada"], f"Goal/{r.json()['id']}")[0]
    assert prov["reason"][0]["coding"] == [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                            "code": "ETREAT"}]
