"""The lists professionals work from (documented in the README): my open assessments, assessments waiting
for my profession's sections, care plans due for review in the next N days, and my caseload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.workflows.support import (
    REVIEW_URL,
    about_me_extra,
    care_act_section,
    care_team,
    carers_section,
    finished_assessment,
    health_section,
    op_params,
    other_sections,
    save_body,
    transition,
)

AWAITING_URL = "https://sharedcare.example.org/fhir/StructureDefinition/awaiting-sections"


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    assert body["total"] == len(body.get("entry", []))
    return [e["resource"]["id"] for e in body.get("entry", [])]


def diagnostics(r: Any) -> str:
    return " ".join(i["diagnostics"] for i in r.json()["issue"])


def start(caller: Any, patient: str = "pat-pat") -> str:
    r = caller.post(f"/fhir/Patient/{patient}/$start-assessment")
    assert r.status_code == 201, r.text
    return r.json()["id"]


def in_days(n: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=n)).isoformat()


# ---------------------------------------------------------------- my open assessments


def test_my_assessments_are_those_i_started_or_answered(users):
    nina, sam, gary = users["nina"], users["sam"], users["gary"]
    rid = start(nina)
    mine = "/fhir/QuestionnaireResponse/$my-assessments"
    assert ids(nina.get(mine)) == [rid]
    assert ids(sam.get(mine)) == []  # not yet: he has not answered anything
    r = sam.post(f"/fhir/QuestionnaireResponse/{rid}/$save-answers", json=save_body(1, care_act_section()))
    assert r.status_code == 200, r.text
    assert ids(sam.get(mine)) == [rid]
    assert ids(gary.get(mine)) == []
    # someone else's list, when asked for by name
    assert ids(users["cara"].get(f"{mine}?practitioner=Practitioner/prac-sam")) == [rid]


def test_my_assessments_by_status(users):
    url = finished_assessment(users)
    rid = url.rsplit("/", 1)[1]
    mine = "/fhir/QuestionnaireResponse/$my-assessments"
    assert ids(users["nina"].get(mine)) == []  # completed: no longer open
    assert ids(users["nina"].get(f"{mine}?status=completed")) == [rid]
    assert ids(users["sam"].get(f"{mine}?status=completed,amended")) == [rid]
    assert ids(users["nina"].get(f"{mine}?status=all")) == [rid]
    r = users["nina"].get(f"{mine}?status=finished")
    assert r.status_code == 400 and "finished" in diagnostics(r)
    r = users["nina"].get(f"{mine}?practitioner=Patient/pat-pat")
    assert r.status_code == 400


def test_my_assessments_needs_a_practitioner(users, auth_headers, client):
    r = client.get("/fhir/QuestionnaireResponse/$my-assessments", headers=auth_headers(client="gp-system"))
    assert r.status_code == 400 and "practitioner" in diagnostics(r)


# ---------------------------------------------------------------- waiting for my profession's sections


def awaiting(r: Any) -> dict[str, list[str]]:
    assert r.status_code == 200, r.text
    return {e["resource"]["id"]: [x["valueString"] for x in e["search"]["extension"] if x["url"] == AWAITING_URL]
            for e in r.json().get("entry", [])}


def test_assessments_waiting_for_my_professions_sections(users):
    nina, sam = users["nina"], users["sam"]
    rid = start(nina)
    url = f"/fhir/QuestionnaireResponse/{rid}"
    query = "/fhir/QuestionnaireResponse/$awaiting-my-sections"
    assert awaiting(nina.get(query)) == {rid: ["health"]}  # nurse: the health section
    assert awaiting(sam.get(query)) == {rid: ["care-act", "carers"]}  # social worker: Care Act and carers
    assert sam.post(f"{url}/$save-answers", json=save_body(1, care_act_section(), carers_section())).status_code == 200
    assert awaiting(sam.get(query)) == {}
    assert awaiting(nina.get(query)) == {rid: ["health"]}
    assert nina.post(f"{url}/$save-answers", json=save_body(2, health_section())).status_code == 200
    assert awaiting(nina.get(query)) == {}
    # a coordinator's job role names no profession: they say which
    r = users["cara"].get(query)
    assert r.status_code == 400 and "profession" in diagnostics(r)
    assert awaiting(users["cara"].get(f"{query}?profession=health")) == {}
    r = users["cara"].get(f"{query}?profession=plumbing")
    assert r.status_code == 400


def test_finished_assessments_are_not_waiting(users):
    finished_assessment(users)
    assert awaiting(users["nina"].get("/fhir/QuestionnaireResponse/$awaiting-my-sections")) == {}


# ---------------------------------------------------------------- care plans due for review


def plan_reviewed_on(users: dict[str, Any], review: str, patient: str = "pat-pat") -> str:
    url = finished_assessment(users, patient)
    r = users["nina"].post(f"{url}/$generate-careplan", json=op_params(reviewDate=review))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_care_plans_due_for_review_in_the_next_n_days(users):
    soon = plan_reviewed_on(users, in_days(10))
    due = "/fhir/CarePlan/$due-for-review"
    assert ids(users["cara"].get(f"{due}?days=14")) == [soon]
    assert ids(users["cara"].get(f"{due}?days=7")) == []
    assert ids(users["cara"].get(due)) == [soon]  # 14 days unless asked
    # an overdue review is still due; soonest first
    plan = users["cara"].get(f"/fhir/CarePlan/{soon}").json()
    late = {k: v for k, v in plan.items() if k not in ("meta", "id")}
    late["extension"] = [e for e in late["extension"] if e["url"] != REVIEW_URL] + [
        {"url": REVIEW_URL, "valueDate": in_days(-3)}]
    r = users["cara"].post("/fhir/CarePlan", json=late)
    assert r.status_code == 201, r.text
    overdue = r.json()["id"]
    assert ids(users["cara"].get(f"{due}?days=0")) == [overdue]
    assert ids(users["cara"].get(f"{due}?days=30")) == [overdue, soon]
    # finished plans are not reviewed
    assert users["cara"].post(f"/fhir/CarePlan/{overdue}/$transition",
                              json=transition("revoked", "Duplicate")).status_code == 200
    assert ids(users["cara"].get(f"{due}?days=30")) == [soon]


def test_due_for_review_rejects_bad_days(users):
    for bad in ("-1", "soon", "99999"):
        r = users["cara"].get(f"/fhir/CarePlan/$due-for-review?days={bad}")
        assert r.status_code == 400, bad
        assert "days" in diagnostics(r)


# ---------------------------------------------------------------- my caseload


def test_my_caseload_is_the_people_whose_team_i_am_in(users):
    caseload = "/fhir/Practitioner/$my-caseload"
    assert ids(users["nina"].get(caseload)) == ["pat-pat"]
    assert ids(users["cara"].get(caseload)) == ["pat-pat"]
    assert ids(users["gary"].get(caseload)) == []  # Pat's GP, but not in her care team
    care_team(users, "pat-paula", "prac-nina", "prac-gary", lead="prac-gary")
    assert ids(users["nina"].get(caseload)) == ["pat-pat", "pat-paula"]
    assert ids(users["gary"].get(caseload)) == ["pat-paula"]
    assert ids(users["ada"].get(f"{caseload}?practitioner=Practitioner/prac-gary")) == ["pat-paula"]
    # leaving the team takes the person off the caseload
    assert ids(users["sam"].get(caseload)) == ["pat-pat"]
    assert users["cara"].post("/fhir/CareTeam/careteam-pat/$remove-member", json=op_params(
        member={"reference": "Practitioner/prac-sam"})).status_code == 200
    assert ids(users["sam"].get(caseload)) == []


def test_the_accountable_professional_of_an_open_plan_has_the_person_on_their_caseload(users):
    url = finished_assessment(users)
    body = op_params(coordinator={"reference": "Practitioner/prac-gary"})
    assert users["nina"].post(f"{url}/$generate-careplan", json=body).status_code == 201
    assert ids(users["gary"].get("/fhir/Practitioner/$my-caseload")) == ["pat-pat"]


def test_queries_are_audited(users):
    users["nina"].get("/fhir/Practitioner/$my-caseload")
    events = users["ada"].get("/fhir/AuditEvent?_count=1000").json().get("entry", [])
    assert any("my-caseload" in str(e["resource"].get("subtype", "")) and "prac-nina" in str(e["resource"]["agent"])
               for e in events)


def test_assessments_for_a_second_person_show_in_their_team_members_lists(users):
    care_team(users, "pat-paula", "prac-nina", "prac-sam")
    rid = start(users["nina"], "pat-paula")
    assert awaiting(users["sam"].get("/fhir/QuestionnaireResponse/$awaiting-my-sections")) == {
        rid: ["care-act", "carers"]}
    url = f"/fhir/QuestionnaireResponse/{rid}"
    body = save_body(1, care_act_section(), carers_section(), health_section(), about_me_extra(), *other_sections())
    assert users["sam"].post(f"{url}/$save-answers", json=body).status_code == 200
    assert ids(users["sam"].get("/fhir/QuestionnaireResponse/$my-assessments")) == [rid]
