"""Versions of the joint assessment form: a response pins `url|version` and is always judged by that version,
so publishing a new version never breaks completed (or in-progress) assessments; a published version never
changes; and a service upgrade never replaces an operator's newer version with an older packaged one."""

from __future__ import annotations

import copy
from typing import Any

from tests.workflows.support import (
    JOINT_URL,
    JOINT_VERSION,
    about_me_extra,
    ans,
    care_act_section,
    carers_section,
    find_item,
    finished_assessment,
    grp,
    health_section,
    other_sections,
    save_body,
)

FORM = "/fhir/Questionnaire/joint-assessment"


def diagnostics(r: Any) -> str:
    return " ".join(i["diagnostics"] for i in r.json()["issue"])


def items_of(form: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return next(i for i in form["item"] if i["linkId"] == section)["item"]


def version_2(users: dict[str, Any]) -> dict[str, Any]:
    """An operator publishes 2.0.0: the phone number becomes required, and the list of technology to
    consider is dropped. Both would break responses to 1.1.0 if they were judged by 2.0.0."""
    form = {k: v for k, v in users["ada"].get(FORM).json().items() if k != "meta"}
    new = copy.deepcopy(form)
    new["version"] = "2.0.0"
    phone = next(i for i in items_of(new, "about-me") if i["linkId"] == "about-me.phone")
    phone["required"] = True
    tec = next(i for i in new["item"] if i["linkId"] == "tec")
    tec["item"] = [i for i in tec["item"] if i["linkId"] != "tec.suggested"]
    r = users["ada"].put(FORM, json=new)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "2.0.0"
    return r.json()


def test_a_new_version_never_breaks_completed_assessments(users):
    url = finished_assessment(users)  # completed under the current version, with tec.suggested answered
    version_2(users)
    old = users["nina"].get(url).json()
    assert old["questionnaire"] == f"{JOINT_URL}|{JOINT_VERSION}"
    # amending it is judged by the version it pinned: tec.suggested is still an item, the phone not required
    body = save_body(int(old["meta"]["versionId"]), grp("about-me", ans("about-me.my-story", "Retired teacher")),
                     reason="Pat told us more")
    r = users["sam"].post(f"{url}/$amend", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["questionnaire"] == f"{JOINT_URL}|{JOINT_VERSION}" and r.json()["status"] == "amended"
    # and it still makes a care plan, with the technology it suggested
    r = users["nina"].post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text
    assert "tec.suggested" in [a["detail"]["code"]["coding"][0]["code"] for a in r.json()["activity"]]
    assert users["cara"].get("/fhir/QuestionnaireResponse/$assessment-metrics").json()["parameter"][0] == {
        "name": "assessmentsCompleted", "valueInteger": 1}


def test_new_assessments_use_the_new_version_and_carry_over_what_is_still_asked(users):
    first = finished_assessment(users)
    version_2(users)
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["questionnaire"] == f"{JOINT_URL}|2.0.0"
    assert find_item(second, "health.falls.need")  # carried over from the first assessment
    try:
        find_item(second, "tec.suggested")  # no longer on the form: not carried over
        raise AssertionError("an item the new version dropped must not be pre-filled")
    except KeyError:
        pass
    url = f"/fhir/QuestionnaireResponse/{second['id']}"
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(
        1, grp("tec", ans("tec.would-benefit", True), ans("tec.suggested", {"system": "x", "code": "y"}))))
    assert r.status_code == 422 and "tec.suggested" in diagnostics(r)
    assert users["nina"].get(first).json()["status"] == "completed"


def test_an_assessment_in_progress_keeps_its_version(users):
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    version_2(users)
    assert users["sam"].post(f"{url}/$save-answers", json=save_body(
        1, care_act_section(), carers_section())).status_code == 200
    assert users["nina"].post(f"{url}/$save-answers", json=save_body(
        2, health_section(), about_me_extra(), *other_sections())).status_code == 200
    r = users["nina"].post(f"{url}/$complete")  # 1.1.0 does not require the phone number
    assert r.status_code == 200, r.text
    assert r.json()["questionnaire"] == f"{JOINT_URL}|{JOINT_VERSION}"


def test_a_published_version_never_changes(users):
    ada = users["ada"]
    form = {k: v for k, v in ada.get(FORM).json().items() if k != "meta"}
    changed = copy.deepcopy(form)
    items_of(changed, "tec").pop()
    r = ada.put(FORM, json=changed)
    assert r.status_code == 409 and JOINT_VERSION in diagnostics(r) and "new version" in diagnostics(r)
    r = ada.put(FORM, json={**form, "url": "https://example.org/Questionnaire/other"})
    assert r.status_code == 422 and "url" in diagnostics(r)
    r = ada.put(FORM, json={k: v for k, v in {**changed, "version": None}.items() if v is not None})
    assert r.status_code == 422 and "version" in diagnostics(r)
    broken = copy.deepcopy(changed)
    broken["version"] = "3.0.0"
    items_of(broken, "tec")[0]["enableWhen"] = [{"question": "tec.nowhere", "operator": "exists",
                                                 "answerBoolean": True}]
    r = ada.put(FORM, json=broken)
    assert r.status_code == 422 and "tec.nowhere" in diagnostics(r)
    r = ada.post("/fhir/Questionnaire", json={k: v for k, v in {**changed, "version": "9.0.0"}.items()
                                               if k != "id"})
    assert r.status_code == 422 and "Questionnaire/joint-assessment" in diagnostics(r)
    # descriptive elements of a published version may be corrected
    r = ada.put(FORM, json={**form, "publisher": "Westshire shared care record"})
    assert r.status_code == 200, r.text
    assert ada.get(FORM).json()["version"] == JOINT_VERSION
    # other questionnaires are not the service's business
    r = ada.post("/fhir/Questionnaire", json={"resourceType": "Questionnaire", "status": "draft",
                                               "url": "https://example.org/Questionnaire/phq9"})
    assert r.status_code == 201, r.text


def test_a_service_upgrade_never_replaces_a_newer_operator_version(users, demo, monkeypatch):
    from service.workflows import forms

    version_2(users)
    assert forms.ensure_questionnaires(demo) == {"questionnaires published": 0}
    # a release whose packaged form (1.2.0, never stored) is older than the operator's 2.0.0
    older = {**forms.current_packaged()[0], "version": "1.2.0"}
    monkeypatch.setattr(forms, "current_packaged", lambda: [older])
    assert forms.ensure_questionnaires(demo) == {"questionnaires published": 0}
    assert users["nina"].get(FORM).json()["version"] == "2.0.0"
    # a newer one (2.1.0) is published
    monkeypatch.setattr(forms, "current_packaged", lambda: [{**older, "version": "2.1.0"}])
    assert forms.ensure_questionnaires(demo) == {"questionnaires published": 1}
    assert users["nina"].get(FORM).json()["version"] == "2.1.0"
    assert forms.version_key("1.10.0") > forms.version_key("1.9.2") > forms.version_key("1.9")


def test_responses_outlive_a_deleted_form(users):
    version_2(users)
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.json()["questionnaire"] == f"{JOINT_URL}|2.0.0"
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    assert users["ada"].delete(FORM).status_code == 204
    r = users["sam"].post(f"{url}/$save-answers", json=save_body(1, care_act_section()))
    assert r.status_code == 200, r.text  # judged by 2.0.0, found in the deleted form's history
    r = users["sam"].post(f"{url}/$save-answers", json=save_body(
        2, grp("tec", ans("tec.would-benefit", True), ans("tec.suggested", {"system": "x", "code": "y"}))))
    assert r.status_code == 422 and "tec.suggested" in diagnostics(r)


def test_responses_to_the_previous_packaged_version_are_judged_by_it(users):
    """1.0.0 was released before this database existed: it is read from the package, never from the
    current form, so its responses still validate, complete and make a plan."""
    base = {"resourceType": "QuestionnaireResponse", "status": "in-progress", "questionnaire": f"{JOINT_URL}|1.0.0",
            "subject": {"reference": "Patient/pat-pat"}}
    level = grp("care-act", grp("care-act.nutrition", ans("care-act.nutrition.level", {"code": "low"})))
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={**base, "item": [level]})
    assert r.status_code == 422 and "care-act.nutrition.level" in diagnostics(r)  # 1.0.0 had no level
    about = grp("about-me", ans("about-me.name", "Pat Example"), ans("about-me.birth-date", "1944-03-12"))
    r = users["nina"].post("/fhir/QuestionnaireResponse", json={**base, "item": [about]})
    assert r.status_code == 201, r.text
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    body = save_body(1, care_act_section(levels=False), carers_section(), health_section(), about_me_extra(),
                     *other_sections())
    r = users["sam"].post(f"{url}/$save-answers", json=body)
    assert r.status_code == 200, r.text
    assert users["sam"].post(f"{url}/$complete").status_code == 200
    r = users["nina"].post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text
    nutrition = next(a["detail"] for a in r.json()["activity"]
                     if a["detail"]["code"]["coding"][0]["code"] == "care-act.nutrition")
    assert nutrition["reasonCode"] == [{"text": "Unable to achieve without assistance"}]
