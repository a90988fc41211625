"""$assessment-metrics: the figures the reports care about: time from referral to completed assessment,
assessments completed jointly (health and social care both contributed) versus by one profession, and
how many items were pre-filled (tell it once)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.workflows.support import (
    about_me_extra,
    care_act_section,
    care_team,
    carers_section,
    finished_assessment,
    health_section,
    op_params,
    other_sections,
    save_body,
)

METRICS = "/fhir/QuestionnaireResponse/$assessment-metrics"
# The figures count what the caller may see; these tests ask as admin.ada (the service's operator), who
# sees every assessment, referral and episode.


def figures(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    out: dict[str, Any] = {}
    for p in body["parameter"]:
        if "part" in p:
            out[p["name"]] = {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


def answered(resp: dict[str, Any]) -> int:
    """Question items with at least one answer value, at any depth."""
    n = 0
    for it in resp.get("item", []):
        if any(k.startswith("value") for a in it.get("answer", []) for k in a):
            n += 1
        n += answered(it) + sum(answered(a) for a in it.get("answer", []))
    return n


def referral(users: dict[str, Any], patient: str, days_ago: float) -> str:
    """The GP practice refers the person to community health and social care services."""
    when = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="seconds")
    r = users["gary"].post("/fhir/ServiceRequest", json={
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"text": "Joint health and social care assessment"},
        "subject": {"reference": f"Patient/{patient}"}, "authoredOn": when,
        "requester": {"reference": "Practitioner/prac-gary"}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def complete_alone(caller: Any, patient: str, **start_params: Any) -> dict[str, Any]:
    """One professional answers every section and completes the assessment."""
    r = caller.post(f"/fhir/Patient/{patient}/$start-assessment",
                    json=op_params(**start_params) if start_params else None)
    assert r.status_code == 201, r.text
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    body = save_body(1, care_act_section(), carers_section(), health_section(), about_me_extra(), *other_sections())
    assert caller.post(f"{url}/$save-answers", json=body).status_code == 200
    r = caller.post(f"{url}/$complete")
    assert r.status_code == 200, r.text
    return r.json()


def test_no_finished_assessments_no_figures(users):
    users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")  # in progress: not counted
    f = figures(users["ada"].get(METRICS))
    assert f["assessmentsCompleted"] == 0 and f["completedJointly"] == 0
    assert f["referralToCompletion"] == {"count": 0}
    assert (f["itemsPrefilled"], f["itemsAnswered"], f["prefilledShare"]) == (0, 0, 0.0)


def test_joint_versus_single_profession_and_items_prefilled(users):
    url = finished_assessment(users)  # nina (health) and sam (social care)
    joint = users["nina"].get(url).json()
    care_team(users, "pat-paula", "prac-nina")
    alone = complete_alone(users["nina"], "pat-paula")  # the nurse alone, every section
    f = figures(users["ada"].get(METRICS))
    assert f["assessmentsCompleted"] == 2
    assert f["completedJointly"] == 1
    assert f["completedByHealthOnly"] == 1
    assert f["completedBySocialCareOnly"] == 0 and f["completedByOther"] == 0
    # Pat: name, birth date, gender, NHS number, address, GP, and her son's name and relationship;
    # Paula has no recorded contacts: six
    assert f["itemsPrefilled"] == 8 + 6
    assert f["itemsAnswered"] == answered(joint) + answered(alone)
    assert f["prefilledShare"] == round(14 / f["itemsAnswered"], 2)


def test_time_from_referral_to_completed_assessment(users):
    sr = referral(users, "pat-pat", days_ago=10)
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment",
                           json=op_params(referral={"reference": f"ServiceRequest/{sr}"}))
    assert r.status_code == 201, r.text
    assert r.json()["basedOn"] == [{"reference": f"ServiceRequest/{sr}"}]
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    assert users["sam"].post(f"{url}/$save-answers", json=save_body(1, care_act_section(), carers_section())
                             ).status_code == 200
    assert users["nina"].post(f"{url}/$save-answers", json=save_body(
        2, health_section(), about_me_extra(), *other_sections())).status_code == 200
    assert users["nina"].post(f"{url}/$complete").status_code == 200
    timing = figures(users["ada"].get(METRICS))["referralToCompletion"]
    assert timing["count"] == 1
    assert 9.99 <= timing["meanDays"] <= 10.01 and timing["medianDays"] == timing["meanDays"] == timing["maxDays"]


def test_the_referral_is_found_for_the_person_when_the_assessment_does_not_name_it(users):
    referral(users, "pat-paula", days_ago=30)  # an old referral, before the one this assessment answers
    referral(users, "pat-paula", days_ago=4)
    care_team(users, "pat-paula", "prac-nina")
    complete_alone(users["nina"], "pat-paula")
    timing = figures(users["ada"].get(METRICS))["referralToCompletion"]
    assert timing["count"] == 1 and 3.99 <= timing["meanDays"] <= 4.01


def test_amending_does_not_move_the_completion_date(users):
    sr = referral(users, "pat-paula", days_ago=2)
    care_team(users, "pat-paula", "prac-nina", "prac-sam")
    done = complete_alone(users["nina"], "pat-paula", referral={"reference": f"ServiceRequest/{sr}"})
    url = f"/fhir/QuestionnaireResponse/{done['id']}"
    body = save_body(int(done["meta"]["versionId"]), care_act_section(unmet=("care-act.clothing",)),
                     sections=("care-act",), reason="Paula told us more at the review")
    assert users["sam"].post(f"{url}/$amend", json=body).status_code == 200
    f = figures(users["ada"].get(METRICS))
    assert f["assessmentsCompleted"] == 1
    assert f["completedJointly"] == 1  # sam's amendment makes it a joint assessment
    assert 1.99 <= f["referralToCompletion"]["meanDays"] <= 2.01


def test_completion_date_window(users):
    finished_assessment(users)
    today = date.today()
    assert figures(users["ada"].get(f"{METRICS}?from={today}&to={today}"))["assessmentsCompleted"] == 1
    assert figures(users["ada"].get(f"{METRICS}?from={today + timedelta(days=1)}"))["assessmentsCompleted"] == 0
    assert figures(users["ada"].get(f"{METRICS}?to={today - timedelta(days=1)}"))["assessmentsCompleted"] == 0
    r = users["ada"].get(f"{METRICS}?from=last-week")
    assert r.status_code == 400 and "from" in r.json()["issue"][0]["diagnostics"]
    r = users["ada"].get(f"{METRICS}?from={today}&to={today - timedelta(days=1)}")
    assert r.status_code == 400
