"""A whole joint assessment through the API: nurse.nina (community trust) and social.sam (council)
answer one assessment, it is completed, it becomes Pat's draft care plan, and the coordinator agrees it.
Runs on SQLite and PostgreSQL, with the demo users' real access tokens."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.workflows.support import (
    AGREEMENT_URL,
    JOINT_URL,
    JOINT_VERSION,
    LEVEL,
    PREFILLED_URL,
    REVIEW_URL,
    about_me_extra,
    ans,
    author_of,
    care_act_section,
    care_team,
    carers_section,
    coding,
    ext,
    find_item,
    health_section,
    op_params,
    other_sections,
    provenance_for,
    save_body,
    version,
)

EPISODE_URL = "https://sharedcare.example.org/fhir/StructureDefinition/assessment-episode"


def start(caller: Any, patient: str = "pat-pat") -> dict[str, Any]:
    r = caller.post(f"/fhir/Patient/{patient}/$start-assessment")
    assert r.status_code == 201, r.text
    return r.json()


def test_start_creates_an_in_progress_assessment_pinned_to_the_form_version(users):
    qr = start(users["nina"])
    assert qr["resourceType"] == "QuestionnaireResponse"
    assert qr["status"] == "in-progress"
    assert qr["questionnaire"] == f"{JOINT_URL}|{JOINT_VERSION}"
    assert qr["subject"] == {"reference": "Patient/pat-pat"}
    assert qr["author"] == {"reference": "Practitioner/prac-nina"}
    form = users["nina"].get("/fhir/Questionnaire/joint-assessment").json()
    assert form["title"] == "Joint health and social care assessment"
    assert (form["url"], form["version"]) == (JOINT_URL, JOINT_VERSION)


def test_start_prefills_what_the_record_already_holds_and_counts_it(users):
    qr = start(users["nina"])
    assert find_item(qr, "about-me.name")["answer"] == [{"valueString": "Pat Example"}]
    assert find_item(qr, "about-me.birth-date")["answer"] == [{"valueDate": "1944-03-12"}]
    assert find_item(qr, "about-me.nhs-number")["answer"] == [{"valueString": "9434765919"}]
    assert find_item(qr, "about-me.gender")["answer"][0]["valueCoding"]["code"] == "female"
    assert find_item(qr, "about-me.address")["answer"] == [{"valueString": "1 High Street, Westshire, WS1 1AA"}]
    gp = find_item(qr, "about-me.gp-practice")["answer"][0]["valueReference"]
    assert gp == {"reference": "Organization/org-gp-practice", "display": "Meadow Lane Surgery"}
    contact = find_item(qr, "about-me.contacts")
    assert find_item({"item": [contact]}, "about-me.contacts.name")["answer"] == [{"valueString": "Carl Example"}]
    # name, birth date, gender, NHS number, address, GP, contact name and relationship
    assert ext(qr, PREFILLED_URL) == 8
    stamp = author_of(qr, "about-me.name")
    assert stamp["source"] == "prefilled"
    assert stamp["sourceReference"] == {"reference": "Patient/pat-pat"}
    # the preferred language is asked only when an interpreter is needed: not pre-filled into a disabled item
    try:
        find_item(qr, "about-me.language")
        raise AssertionError("about-me.language must not be pre-filled while it is disabled")
    except KeyError:
        pass


def test_starting_again_returns_the_assessment_already_in_progress(users):
    first = start(users["nina"])
    again = users["sam"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]


def test_start_for_an_unknown_patient_is_404(users):
    r = users["nina"].post("/fhir/Patient/nobody/$start-assessment")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_whole_joint_assessment_by_nurse_and_social_worker(users):
    nina, sam, cara = users["nina"], users["sam"], users["cara"]
    qr = start(nina)
    rid = qr["id"]
    url = f"/fhir/QuestionnaireResponse/{rid}"

    # both read version 1 and work on their own sections at the same time
    r = sam.post(f"{url}/$save-answers", json=save_body(1, care_act_section(), carers_section(),
                                                          sections=("care-act", "carers")))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    r = nina.post(f"{url}/$save-answers", json=save_body(1, health_section(), about_me_extra(), *other_sections()))
    assert r.status_code == 200, r.text
    assert version(r) == 3
    merged = r.json()

    sam_said = author_of(merged, "care-act.nutrition.need")
    assert sam_said["author"] == {"reference": "Practitioner/prac-sam"}
    assert sam_said["organisation"] == {"reference": "Organization/org-council-asc"}
    assert sam_said["profession"] == "social-care"
    assert sam_said["source"] == "entered" and sam_said["revision"] == 2
    nina_said = author_of(merged, "health.falls.need")
    assert nina_said["author"] == {"reference": "Practitioner/prac-nina"}
    assert nina_said["organisation"] == {"reference": "Organization/org-community-trust"}
    assert nina_said["profession"] == "health" and nina_said["revision"] == 3
    assert author_of(merged, "carers.carer")["author"] == {"reference": "Practitioner/prac-sam"}
    assert author_of(merged, "about-me.name")["source"] == "prefilled"  # untouched answers keep their author

    r = sam.post(f"{url}/$complete")
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed"

    r = nina.post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["resourceType"] == "CarePlan" and plan["status"] == "draft" and plan["intent"] == "plan"
    assert plan["subject"] == {"reference": "Patient/pat-pat"}
    assert plan["author"] == {"reference": "Practitioner/prac-cara"}  # the care team's lead (care coordinator)
    assert {"reference": "Practitioner/prac-nina"} in plan["contributor"]
    assert {"reference": "Practitioner/prac-sam"} in plan["contributor"]
    assert plan["careTeam"] == [{"reference": "CareTeam/careteam-pat"}]
    assert plan["supportingInfo"] == [{"reference": f"QuestionnaireResponse/{rid}/_history/{version(r) and 4}"}]
    assert ext(plan, REVIEW_URL) is not None
    by_need = {a["detail"]["code"]["coding"][0]["code"]: a["detail"] for a in plan["activity"]}
    assert by_need["care-act.nutrition"]["performer"] == [{"reference": "Organization/org-council-asc"}]
    assert by_need["care-act.nutrition"]["reasonCode"] == [
        {"text": "Unable to achieve without assistance; level of need: moderate"}]
    nutrition = next(a for a in plan["activity"] if a["detail"]["code"]["coding"][0]["code"] == "care-act.nutrition")
    assert "Eligible need under the Care Act 2014" in nutrition["progress"][0]["text"]  # two outcomes, impairment
    assert by_need["health.falls"]["performer"] == [{"reference": "Organization/org-community-trust"}]
    assert by_need["health.falls"]["scheduledPeriod"]["end"] > by_need["health.falls"]["scheduledPeriod"]["start"]
    assert "health.falls.referral" in by_need and "carers.carer.assessment-wanted" in by_need
    assert "Carl Example" in by_need["carers.carer.assessment-wanted"]["description"]
    assert "tec.suggested" in by_need and "health.skin" not in by_need  # no skin need was found

    goals = [nina.get(f"/fhir/{g['reference']}").json() for g in plan["goal"]]
    own = [g for g in goals if g.get("expressedBy") == {"reference": "Patient/pat-pat"}]
    assert [g["description"]["text"] for g in own] == [
        "Staying in my own home with my cat, and seeing my grandchildren"]
    assert all(g["lifecycleStatus"] == "proposed" for g in goals)

    r = cara.post(f"/fhir/CarePlan/{plan['id']}/$transition",
                  json={"resourceType": "Parameters", "parameter": [{"name": "status", "valueCode": "active"}]})
    assert r.status_code == 200, r.text
    active = r.json()
    assert active["status"] == "active"
    agreement = next(e for e in active["extension"] if e["url"] == AGREEMENT_URL)
    parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in agreement["extension"]}
    assert parts["agreedBy"] == {"reference": "Practitioner/prac-cara"}
    assert parts["agreedWith"] == {"reference": "Patient/pat-pat"}
    assert parts["date"]
    assert all(nina.get(f"/fhir/{g['reference']}").json()["lifecycleStatus"] == "active" for g in plan["goal"])


def test_a_second_assessment_is_prefilled_from_the_previous_one(users):
    nina, sam = users["nina"], users["sam"]
    rid = start(nina)["id"]
    url = f"/fhir/QuestionnaireResponse/{rid}"
    assert sam.post(f"{url}/$save-answers", json=save_body(1, care_act_section(), carers_section())).status_code == 200
    assert nina.post(f"{url}/$save-answers", json=save_body(
        2, health_section(), about_me_extra(), *other_sections())).status_code == 200
    assert nina.post(f"{url}/$complete").status_code == 200
    second = start(sam)
    assert second["id"] != rid
    falls = author_of(second, "health.falls.need")
    assert falls["source"] == "prefilled"
    assert falls["sourceReference"]["reference"] == f"QuestionnaireResponse/{rid}/_history/4"
    assert find_item(second, "about-me.what-matters")["answer"][0]["valueString"].startswith("Staying in my own")
    assert author_of(second, "about-me.name")["sourceReference"] == {"reference": "Patient/pat-pat"}  # record wins
    assert ext(second, PREFILLED_URL) > 40


def test_plan_timescales_follow_the_level_of_need_and_eligibility_follows_the_regulations(users):
    """One unmet Care Act outcome is not an eligible need (regulation 2(1)(b) asks for two or more); a severe
    level of need is acted on within 2 days."""
    nina, sam = users["nina"], users["sam"]
    url = f"/fhir/QuestionnaireResponse/{start(nina)['id']}"
    care_act = care_act_section(unmet=("care-act.home-safety",))
    home = find_item(care_act, "care-act.home-safety")
    home["item"][1] = ans("care-act.home-safety.level", coding(LEVEL, "severe"))
    assert sam.post(f"{url}/$save-answers", json=save_body(1, care_act, carers_section())).status_code == 200
    assert nina.post(f"{url}/$save-answers", json=save_body(
        2, health_section(), about_me_extra(), *other_sections())).status_code == 200
    assert nina.post(f"{url}/$complete").status_code == 200
    r = nina.post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text
    home_activity = next(a for a in r.json()["activity"]
                         if a["detail"]["code"]["coding"][0]["code"] == "care-act.home-safety")
    assert "progress" not in home_activity  # one outcome only: not an eligible need
    period = home_activity["detail"]["scheduledPeriod"]
    assert date.fromisoformat(period["end"]) - date.fromisoformat(period["start"]) == timedelta(days=2)
    assert home_activity["detail"]["description"].startswith(
        "Support with being able to make use of the adult's home safely")


def test_start_links_the_episode_and_the_referral(users):
    r = users["nina"].post("/fhir/EpisodeOfCare", json={
        "resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": "Patient/pat-pat"},
        "managingOrganization": {"reference": "Organization/org-community-trust"},
        "period": {"start": "2026-11-01"}})
    assert r.status_code == 201, r.text
    episode = f"EpisodeOfCare/{r.json()['id']}"
    r = users["gary"].post("/fhir/ServiceRequest", json={
        "resourceType": "ServiceRequest", "status": "active", "intent": "order", "authoredOn": "2026-11-02",
        "code": {"text": "Joint assessment"}, "subject": {"reference": "Patient/pat-pat"}})
    assert r.status_code == 201, r.text
    referral = f"ServiceRequest/{r.json()['id']}"
    body = op_params(episode={"reference": episode}, referral={"reference": referral})
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment", json=body)
    assert r.status_code == 201, r.text
    qr = r.json()
    assert ext(qr, EPISODE_URL) == {"reference": episode}
    assert qr["basedOn"] == [{"reference": referral}]
    trail = provenance_for(users["ada"], f"QuestionnaireResponse/{qr['id']}")
    sources = [e["what"]["reference"] for e in trail[0]["entity"]]
    assert {"Patient/pat-pat", episode, referral} <= set(sources)


def test_start_refuses_an_episode_or_referral_of_someone_else(users):
    care_team(users, "pat-paula", "prac-nina")  # so that nina may see Paula's episode
    r = users["gary"].post("/fhir/EpisodeOfCare", json={
        "resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": "Patient/pat-paula"},
        "managingOrganization": {"reference": "Organization/org-gp-practice"}})
    assert r.status_code == 201, r.text
    paulas = f"EpisodeOfCare/{r.json()['id']}"
    cases = [(op_params(episode={"reference": paulas}), 422, "Patient/pat-paula"),
             (op_params(episode={"reference": "EpisodeOfCare/none"}), 422, "not known"),
             (op_params(referral={"reference": "ServiceRequest/none"}), 422, "not known"),
             (op_params(episode={"reference": "Encounter/e1"}), 400, "EpisodeOfCare")]
    for body, status, text in cases:
        r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment", json=body)
        assert r.status_code == status, r.text
        assert text in " ".join(i["diagnostics"] for i in r.json()["issue"])
    assert users["nina"].get("/fhir/QuestionnaireResponse?subject=Patient/pat-pat").json()["total"] == 0
