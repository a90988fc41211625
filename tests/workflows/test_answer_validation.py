"""Answers are checked against the form version the assessment pinned; errors name the linkId; a refused
write leaves nothing behind. The same rules hold for plain REST writes of a joint assessment."""

from __future__ import annotations

from typing import Any

from tests.workflows.support import (
    AUTHOR_URL,
    JOINT_URL,
    JOINT_VERSION,
    about_me_extra,
    ans,
    author_of,
    care_act_section,
    care_team,
    carers_section,
    find_item,
    grp,
    health_section,
    other_sections,
    params,
    save_body,
)


def start(users: dict[str, Any]) -> str:
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    return f"/fhir/QuestionnaireResponse/{r.json()['id']}"


def issues(r: Any) -> str:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i["diagnostics"] for i in body["issue"])


def complete_all(users: dict[str, Any], url: str) -> None:
    assert users["sam"].post(f"{url}/$save-answers", json=save_body(
        1, care_act_section(), carers_section())).status_code == 200
    assert users["nina"].post(f"{url}/$save-answers", json=save_body(
        2, health_section(), about_me_extra(), *other_sections())).status_code == 200
    r = users["nina"].post(f"{url}/$complete")
    assert r.status_code == 200, r.text


def test_wrong_answer_type_is_422_naming_the_item(users):
    url = start(users)
    bad = grp("health", grp("health.falls", ans("health.falls.history", True), ans("health.falls.count", "three")))
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(1, bad))
    assert r.status_code == 422
    assert "health.falls.count" in issues(r) and "valueInteger" in issues(r)
    assert users["nina"].get(url).json()["meta"]["versionId"] == "1"


def test_code_outside_the_answer_options_is_422(users):
    url = start(users)
    bad = grp("health", grp("health.falls", ans("health.falls.need", {"system": "x", "code": "dreadful"})))
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(1, bad))
    assert r.status_code == 422
    assert "health.falls.need" in issues(r)
    assert r.json()["issue"][0]["code"] == "code-invalid"


def test_answer_to_a_disabled_question_is_422(users):
    url = start(users)
    bad = grp("health", grp("health.falls", ans("health.falls.history", False), ans("health.falls.count", 2)))
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(1, bad))
    assert r.status_code == 422
    assert "health.falls.count" in issues(r) and "not enabled" in issues(r)


def test_unknown_item_and_loose_repeating_group_child_are_422(users):
    url = start(users)
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(1, grp("health", ans("health.telepathy", True))))
    assert r.status_code == 422
    assert "health.telepathy" in issues(r)
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(1, grp("carers", ans("carers.carer.name", "Al"))))
    assert r.status_code == 422
    assert "carers.carer.name" in issues(r) and "carers.carer" in issues(r)


def test_bad_operation_input_is_400(users):
    url = start(users)
    r = users["nina"].post(f"{url}/$save-answers", json={"resourceType": "Patient"})
    assert r.status_code == 400
    r = users["nina"].post(f"{url}/$save-answers", json=params({"name": "baseVersion", "valueInteger": 1}))
    assert r.status_code == 400 and "response" in issues(r)
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(1, sections=("hobbies",)))
    assert r.status_code == 400 and "hobbies" in issues(r)
    r = users["nina"].post(f"{url}/$save-answers", content=b"{not json", headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400


def test_completing_with_required_items_missing_is_422_naming_each(users):
    url = start(users)
    r = users["nina"].post(f"{url}/$complete")
    assert r.status_code == 422
    text = issues(r)
    for link_id in ("about-me.what-matters", "care-act.nutrition.need", "health.falls.need", "carers.has-carer",
                    "sharing.discussed"):
        assert link_id in text
    assert all(i["code"] == "required" for i in r.json()["issue"])
    assert users["nina"].get(url).json()["status"] == "in-progress"


def test_complete_twice_is_409_and_save_after_completion_is_409(users):
    url = start(users)
    complete_all(users, url)
    r = users["nina"].post(f"{url}/$complete")
    assert r.status_code == 409
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(4, grp("about-me", ans("about-me.my-story", "x"))))
    assert r.status_code == 409 and "$amend" in issues(r)


def test_amend_after_completion_needs_a_reason_and_keeps_it_complete(users):
    url = start(users)
    complete_all(users, url)
    change = grp("about-me", ans("about-me.my-story", "Since my fall I have been afraid to go out"))
    r = users["sam"].post(f"{url}/$amend", json=save_body(4, change))
    assert r.status_code == 400 and "reason" in issues(r)
    r = users["sam"].post(f"{url}/$amend", json=save_body(4, change, reason="Pat told us more at the review"))
    assert r.status_code == 200, r.text
    amended = r.json()
    assert amended["status"] == "amended" and amended["meta"]["versionId"] == "5"
    assert author_of(amended, "about-me.my-story")["author"] == {"reference": "Practitioner/prac-sam"}
    # an amendment may not leave required answers out
    r = users["sam"].post(f"{url}/$amend", json=save_body(5, sections=("sharing",), reason="tidy"))
    assert r.status_code == 422 and "sharing.discussed" in issues(r)
    # $amend is only for finished assessments (Paula's, once nina is in her care team)
    care_team(users, "pat-paula", "prac-nina")
    other = users["nina"].post("/fhir/Patient/pat-paula/$start-assessment").json()["id"]
    r = users["nina"].post(f"/fhir/QuestionnaireResponse/{other}/$amend", json=save_body(1, change, reason="x"))
    assert r.status_code == 409


def test_plain_put_of_an_invalid_answer_is_422_naming_the_item(users):
    url = start(users)
    current = users["nina"].get(url).json()
    body = {k: v for k, v in current.items() if k != "meta"}
    body["item"] = [*body["item"], grp("health", grp("health.pain", ans("health.pain.score", 42)))]
    r = users["nina"].put(url, json=body)
    assert r.status_code == 422
    assert "health.pain.score" in issues(r)


def test_plain_put_cannot_forge_who_answered(users):
    url = start(users)
    current = users["sam"].get(url).json()
    body = {k: v for k, v in current.items() if k != "meta"}
    forged = {"url": AUTHOR_URL, "extension": [{"url": "author", "valueReference": {"reference": "Practitioner/prac-gary"}}]}
    body["item"] = [*body["item"], {"linkId": "tec", "item": [
        {"linkId": "tec.would-benefit", "extension": [forged], "answer": [{"valueBoolean": False}]}]}]
    # and tamper with a pre-filled answer's stamp without changing the answer
    about = body["item"][0]
    about["item"][0]["extension"] = [forged]
    r = users["sam"].put(url, json=body)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert author_of(saved, "tec.would-benefit")["author"] == {"reference": "Practitioner/prac-sam"}
    assert author_of(saved, "about-me.name")["author"] == {"reference": "Practitioner/prac-nina"}
    assert author_of(saved, "about-me.name")["source"] == "prefilled"


def test_plain_writes_follow_the_status_rules(users):
    url = start(users)
    complete_all(users, url)
    current = users["nina"].get(url).json()
    body = {k: v for k, v in current.items() if k != "meta"}
    back = {**body, "status": "in-progress"}
    r = users["nina"].put(url, json=back)
    assert r.status_code == 409 and "completed" in issues(r)
    changed = {**body, "item": [i for i in body["item"] if i["linkId"] != "tec"] + [
        grp("tec", ans("tec.would-benefit", False))]}
    r = users["nina"].put(url, json=changed)
    assert r.status_code == 409 and "amend" in issues(r)
    r = users["nina"].put(url, json={**changed, "status": "amended"})
    assert r.status_code == 200, r.text
    assert find_item(r.json(), "tec.would-benefit")["answer"] == [{"valueBoolean": False}]


def test_plain_create_is_checked_too(users):
    base = {"resourceType": "QuestionnaireResponse", "status": "in-progress", "subject": {"reference": "Patient/pat-pat"}}
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={**base, "questionnaire": f"{JOINT_URL}|9.9.9"})
    assert r.status_code == 422 and "9.9.9" in issues(r)
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={**base, "questionnaire": f"{JOINT_URL}|{JOINT_VERSION}",
                                                                "subject": {"reference": "Group/g"}})
    assert r.status_code == 422 and "subject" in issues(r)
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={
        **base, "questionnaire": f"{JOINT_URL}|{JOINT_VERSION}", "item": [grp("tec", ans("tec.would-benefit", "yes"))]})
    assert r.status_code == 422 and "tec.would-benefit" in issues(r)
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={
        **base, "questionnaire": f"{JOINT_URL}|{JOINT_VERSION}", "item": [grp("tec", ans("tec.would-benefit", True))]})
    assert r.status_code == 201, r.text
    assert author_of(r.json(), "tec.would-benefit")["author"] == {"reference": "Practitioner/prac-nina"}
    # responses to other forms are not the joint assessment's business
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={**base, "questionnaire": "http://example.org/Q/phq9"})
    assert r.status_code == 201, r.text
