"""The care plan's life: draft -> active (agreed) <-> on-hold -> completed | revoked; illegal moves are 409
whether asked for with $transition, PUT or PATCH; the plan's goals follow it."""

from __future__ import annotations

from typing import Any

from tests.workflows.support import (
    AGREEMENT_URL,
    ans,
    author_of,
    care_act_section,
    carers_section,
    ext,
    finished_assessment,
    grp,
    health_section,
    other_sections,
    params,
    save_body,
    transition,
)


def draft_plan(users: dict[str, Any], **kw: Any) -> dict[str, Any]:
    url = finished_assessment(users)
    r = users["nina"].post(f"{url}/$generate-careplan", **kw)
    assert r.status_code == 201, r.text
    return r.json()


def move(users: dict[str, Any], plan_id: str, status: str, reason: str | None = None, who: str = "cara") -> Any:
    return users[who].post(f"/fhir/CarePlan/{plan_id}/$transition", json=transition(status, reason))


def diagnostics(r: Any) -> str:
    return " ".join(i["diagnostics"] for i in r.json()["issue"])


def test_legal_path_draft_active_on_hold_active_completed(users):
    plan = draft_plan(users)
    pid = plan["id"]
    r = move(users, pid, "active")
    assert r.status_code == 200, r.text
    assert ext(r.json(), AGREEMENT_URL) is not None
    r = move(users, pid, "on-hold")
    assert r.status_code == 400 and "reason" in diagnostics(r)
    r = move(users, pid, "on-hold", "Pat is in hospital")
    assert r.status_code == 200 and r.json()["status"] == "on-hold"
    assert ext(r.json(), "https://sharedcare.example.org/fhir/StructureDefinition/careplan-status-reason") == \
        "Pat is in hospital"
    goals = [users["nina"].get(f"/fhir/{g['reference']}").json()["lifecycleStatus"] for g in plan["goal"]]
    assert set(goals) == {"on-hold"}
    assert move(users, pid, "active").status_code == 200
    r = move(users, pid, "completed")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert r.json()["meta"]["versionId"] == "5"
    # the agreement recorded at activation is kept on every later version
    agreed = ext(r.json(), AGREEMENT_URL)
    assert {p["url"] for p in agreed["extension"]} == {"agreedBy", "agreedWith", "date"}
    goals = [users["nina"].get(f"/fhir/{g['reference']}").json()["lifecycleStatus"] for g in plan["goal"]]
    assert set(goals) == {"completed"}


def test_a_draft_can_be_revoked_and_goals_are_cancelled(users):
    plan = draft_plan(users)
    r = move(users, plan["id"], "revoked", "Pat chose another provider")
    assert r.status_code == 200, r.text
    goals = [users["nina"].get(f"/fhir/{g['reference']}").json()["lifecycleStatus"] for g in plan["goal"]]
    assert set(goals) == {"cancelled"}


def test_illegal_transitions_are_409_naming_both_states(users):
    plan = draft_plan(users)
    pid = plan["id"]
    r = move(users, pid, "completed")
    assert r.status_code == 409
    assert "draft" in diagnostics(r) and "completed" in diagnostics(r) and "active" in diagnostics(r)
    assert move(users, pid, "on-hold", "x").status_code == 409
    assert move(users, pid, "active").status_code == 200
    assert move(users, pid, "draft").status_code == 409
    assert move(users, pid, "completed").status_code == 200
    r = move(users, pid, "active")
    assert r.status_code == 409 and "entered-in-error" in diagnostics(r)
    assert move(users, pid, "revoked", "late").status_code == 409
    r = move(users, pid, "finished")
    assert r.status_code == 400 and "finished" in diagnostics(r)
    r = users["cara"].post(f"/fhir/CarePlan/{pid}/$transition", json=params())
    assert r.status_code == 400 and "status" in diagnostics(r)
    assert users["nina"].get(f"/fhir/CarePlan/{pid}").json()["status"] == "completed"


def test_illegal_status_changes_through_put_and_patch_are_refused_too(users):
    plan = draft_plan(users)
    url = f"/fhir/CarePlan/{plan['id']}"
    body = {k: v for k, v in plan.items() if k != "meta"}
    r = users["cara"].put(url, json={**body, "status": "completed"})
    assert r.status_code == 409 and "draft" in diagnostics(r)
    r = users["cara"].patch(url, json=[{"op": "replace", "path": "/status", "value": "on-hold"}],
                            headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 409
    # a legal change through PUT records the agreement like $transition does
    r = users["cara"].put(url, json={**body, "status": "active"})
    assert r.status_code == 200, r.text
    active = r.json()
    assert ext(active, AGREEMENT_URL) is not None
    # and a client cannot drop or rewrite the recorded agreement
    stripped = {k: v for k, v in active.items() if k != "meta"}
    stripped["extension"] = [e for e in stripped["extension"] if e["url"] != AGREEMENT_URL]
    r = users["nina"].put(url, json=stripped)
    assert r.status_code == 200
    assert ext(r.json(), AGREEMENT_URL) == ext(active, AGREEMENT_URL)


def test_generate_again_for_the_same_assessment_returns_the_same_draft(users):
    url = finished_assessment(users)
    first = users["nina"].post(f"{url}/$generate-careplan")
    again = users["sam"].post(f"{url}/$generate-careplan")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_generate_takes_a_coordinator_and_a_review_date(users):
    url = finished_assessment(users)
    r = users["nina"].post(f"{url}/$generate-careplan", json=params({"name": "reviewDate", "valueDate": "2001-01-01"}))
    assert r.status_code == 400 and "past" in diagnostics(r)
    r = users["nina"].post(f"{url}/$generate-careplan", json=params({"name": "reviewDate", "valueString": "soon"}))
    assert r.status_code == 400 and "reviewDate" in diagnostics(r)
    r = users["nina"].post(f"{url}/$generate-careplan", json=params(
        {"name": "coordinator", "valueReference": {"reference": "Patient/pat-pat"}}))
    assert r.status_code == 400 and "Practitioner" in diagnostics(r)
    body = params({"name": "coordinator", "valueReference": {"reference": "Practitioner/prac-sam"}},
                  {"name": "reviewDate", "valueDate": "2099-01-31"})
    r = users["nina"].post(f"{url}/$generate-careplan", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["author"] == {"reference": "Practitioner/prac-sam"}
    assert ext(r.json(), "https://sharedcare.example.org/fhir/StructureDefinition/careplan-review-date") == "2099-01-31"


def test_generate_needs_a_finished_assessment(users):
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    r = users["nina"].post(f"{url}/$generate-careplan")
    assert r.status_code == 409 and "$complete" in diagnostics(r)


def test_only_the_care_team_may_generate_the_plan(users):
    url = finished_assessment(users)
    # Pat's GP has a care relationship (her registered practice) but is not in her care team
    r = users["gary"].post(f"{url}/$generate-careplan")
    assert r.status_code == 403
    assert "care team" in diagnostics(r)
    # a ward nurse at the acute trust has no relationship with Pat at all: refused (or, under the care
    # relationship policy, the assessment is not even visible to him)
    r = users["wes"].post(f"{url}/$generate-careplan")
    assert r.status_code in (403, 404)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert users["nina"].get("/fhir/CarePlan?subject=Patient/pat-pat&status=draft").json().get("total", 0) == 0


def test_the_plan_is_agreed_with_the_person_or_someone_on_their_behalf(users):
    plan = draft_plan(users)
    body = params({"name": "status", "valueCode": "active"},
                  {"name": "agreedWith", "valueReference": {"reference": "Practitioner/prac-sam"}})
    r = users["cara"].post(f"/fhir/CarePlan/{plan['id']}/$transition", json=body)
    assert r.status_code == 400 and "agreedWith" in diagnostics(r)
    body["parameter"][1]["valueReference"] = {"reference": "RelatedPerson/rp-carl"}
    r = users["cara"].post(f"/fhir/CarePlan/{plan['id']}/$transition", json=body)
    assert r.status_code == 200, r.text
    agreed = {p["url"]: next(v for k, v in p.items() if k.startswith("value"))
              for p in ext(r.json(), AGREEMENT_URL)["extension"]}
    assert agreed["agreedWith"] == {"reference": "RelatedPerson/rp-carl"}
    assert agreed["agreedBy"] == {"reference": "Practitioner/prac-cara"}
    assert agreed["date"][:10] == r.json()["meta"]["lastUpdated"][:10]


def test_the_persons_own_words_become_their_goals(users):
    """Pat writes what matters to her into her own assessment; the plan keeps her words as they are."""
    nina, sam, pat = users["nina"], users["sam"], users["pat"]
    r = nina.post("/fhir/Patient/pat-pat/$start-assessment")
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    words = "To get back to my allotment by the spring,\nand not to be a burden on Carl."
    wanted = "Make my own lunch again"
    mine = grp("about-me", ans("about-me.what-matters", words), ans("about-me.outcomes-wanted", wanted))
    r = pat.post(f"{url}/$save-answers", json=save_body(1, mine))
    assert r.status_code == 200, r.text
    assert author_of(r.json(), "about-me.what-matters")["author"] == {"reference": "Patient/pat-pat"}
    assert sam.post(f"{url}/$save-answers", json=save_body(2, care_act_section(), carers_section())).status_code == 200
    body = save_body(3, health_section(), grp("about-me", ans("about-me.interpreter-needed", False)),
                     *other_sections())
    assert nina.post(f"{url}/$save-answers", json=body).status_code == 200
    assert nina.post(f"{url}/$complete").status_code == 200
    r = nina.post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text
    goals = [nina.get(f"/fhir/{g['reference']}").json() for g in r.json()["goal"]]
    own = [(g["category"][0]["coding"][0]["code"], g["description"]["text"]) for g in goals
           if g.get("expressedBy") == {"reference": "Patient/pat-pat"}]
    assert own == [("what-matters", words), ("outcomes-wanted", wanted)]
    assert {"reference": "Patient/pat-pat"} in r.json()["contributor"]
