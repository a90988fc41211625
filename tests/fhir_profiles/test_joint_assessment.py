"""The joint assessment Questionnaire and the QuestionnaireResponse validator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from fhir_profiles.questionnaire_validation import (
    PREFILL_SOURCE_URL,
    PREFILL_SOURCES,
    SECTION_PROFESSION_URL,
    Issue,
    check_questionnaire,
    enabled_items,
    has_errors,
    prefill_sources,
    questionnaire_index,
    section_of,
    section_profession,
    validate_response,
)
from fhir_profiles.questionnaires import JOINT_ASSESSMENT_URL, load_joint_assessment

CS = "https://sharedcare.example.org/fhir/CodeSystem/"
ACHIEVE = CS + "assessment-outcome-achievement"
LEVEL = CS + "assessment-need-level"
ANSWER = CS + "assessment-answer"
SHARING = CS + "assessment-sharing-wish"
RISK_LEVEL = CS + "assessment-risk-level"

CARE_ACT_OUTCOMES = {
    "care-act.nutrition": "Managing and maintaining nutrition",
    "care-act.personal-hygiene": "Maintaining personal hygiene",
    "care-act.toilet-needs": "Managing toilet needs",
    "care-act.clothing": "Being appropriately clothed",
    "care-act.home-safety": "Being able to make use of the adult's home safely",
    "care-act.habitable-home": "Maintaining a habitable home environment",
    "care-act.relationships": "Developing and maintaining family or other personal relationships",
    "care-act.work-education": "Accessing and engaging in work, training, education or volunteering",
    "care-act.community": "Making use of necessary facilities or services in the local community including "
    "public transport, and recreational facilities or services",
    "care-act.caring-for-child": "Carrying out any caring responsibilities the adult has for a child",
}
HEALTH_NEEDS = {
    "health.falls": "Mobility and falls",
    "health.skin": "Skin integrity",
    "health.continence": "Continence",
    "health.nutrition-hydration": "Nutrition and hydration",
    "health.medicines": "Medicines",
    "health.breathing": "Breathing",
    "health.pain": "Pain",
    "health.memory-cognition": "Memory and cognition",
    "health.mental-health": "Mental health",
}
SECTIONS = {
    "about-me": "any",
    "care-act": "social-care",
    "health": "health",
    "risks": "any",
    "carers": "social-care",
    "tec": "any",
    "sharing": "any",
}


@pytest.fixture(scope="module")
def q() -> dict[str, Any]:
    return load_joint_assessment()


# ---------------------------------------------------------------- building responses


def coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def a(value: Any) -> dict[str, Any]:
    """One answer; the value[x] key follows the Python type (dict with 'code' -> Coding)."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    if isinstance(value, dict) and "code" in value:
        return {"valueCoding": value}
    if isinstance(value, dict) and "reference" in value:
        return {"valueReference": value}
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return {"valueDate": value}
    return {"valueString": value}


def ans(link_id: str, *values: Any) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [a(v) for v in values]}


def grp(link_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "item": list(items)}


def response(*items: dict[str, Any], status: str = "in-progress") -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "status": status,
        "questionnaire": JOINT_ASSESSMENT_URL,
        "subject": {"reference": "Patient/pat"},
        "item": list(items),
    }


def care_act_outcome(link_id: str, unmet: bool) -> dict[str, Any]:
    if not unmet:
        return grp(link_id, ans(f"{link_id}.need", coding(ACHIEVE, "achieves-unaided")))
    return grp(
        link_id,
        ans(f"{link_id}.need", coding(ACHIEVE, "needs-assistance")),
        ans(f"{link_id}.level", coding(LEVEL, "moderate")),
        ans(f"{link_id}.significant-impact", True),
        ans(f"{link_id}.impact", "Skips meals and has lost weight"),
    )


def complete_response() -> dict[str, Any]:
    """A full, valid, completed joint assessment."""
    return response(
        grp(
            "about-me",
            ans("about-me.name", "Ada Example"),
            ans("about-me.birth-date", "1941-03-02"),
            ans("about-me.gender", coding("http://hl7.org/fhir/administrative-gender", "female")),
            ans("about-me.nhs-number", "9434765919"),
            ans("about-me.gp-practice", {"reference": "Organization/gp", "display": "The Surgery"}),
            grp(
                "about-me.contacts",
                ans("about-me.contacts.name", "Ben Example"),
                ans(
                    "about-me.contacts.relationship",
                    coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "CHILD"),
                ),
                ans(
                    "about-me.contacts.role",
                    coding("http://terminology.hl7.org/CodeSystem/v2-0131", "N"),
                    coding("http://terminology.hl7.org/CodeSystem/v2-0131", "C"),
                ),
            ),
            ans("about-me.interpreter-needed", False),
            ans("about-me.what-matters", "Staying in my own home with my cat"),
        ),
        grp(
            "care-act",
            ans("care-act.needs-from-impairment", True),
            *[
                care_act_outcome(lid, unmet=lid in ("care-act.nutrition", "care-act.personal-hygiene"))
                for lid in CARE_ACT_OUTCOMES
            ],
        ),
        grp(
            "health",
            grp(
                "health.falls",
                ans("health.falls.need", coding(LEVEL, "moderate")),
                ans("health.falls.history", True),
                ans("health.falls.count", 3),
                ans("health.falls.referral", True),
            ),
            grp("health.skin", ans("health.skin.need", coding(LEVEL, "none"))),
            grp("health.continence", ans("health.continence.need", coding(LEVEL, "low"))),
            grp(
                "health.nutrition-hydration",
                ans("health.nutrition-hydration.need", coding(LEVEL, "moderate")),
                ans("health.nutrition-hydration.weight", 51.5),
                ans("health.nutrition-hydration.must-score", 1),
            ),
            grp(
                "health.medicines",
                ans("health.medicines.need", coding(LEVEL, "low")),
                ans("health.medicines.management", coding(ANSWER, "meds-prompting")),
            ),
            grp("health.breathing", ans("health.breathing.need", coding(LEVEL, "none"))),
            grp(
                "health.pain",
                ans("health.pain.need", coding(LEVEL, "low")),
                ans("health.pain.has-pain", True),
                ans("health.pain.score", 4),
            ),
            grp("health.memory-cognition", ans("health.memory-cognition.need", coding(LEVEL, "low"))),
            grp("health.mental-health", ans("health.mental-health.need", coding(LEVEL, "none"))),
        ),
        grp(
            "risks",
            ans("risks.safeguarding-concern", False),
            grp(
                "risks.risk",
                ans("risks.risk.type", coding(ANSWER, "risk-falls")),
                ans("risks.risk.level", coding(RISK_LEVEL, "high")),
            ),
        ),
        grp(
            "carers",
            ans("carers.has-carer", True),
            grp(
                "carers.carer",
                ans("carers.carer.name", "Ben Example"),
                ans("carers.carer.willing-able", True),
                ans("carers.carer.assessment-offered", True),
                ans("carers.carer.assessment-wanted", True),
                ans("carers.carer.assessment-date", "2026-12-01"),
            ),
        ),
        grp("tec", ans("tec.would-benefit", True), ans("tec.suggested", coding(ANSWER, "tec-pendant-alarm"))),
        grp(
            "sharing",
            ans("sharing.discussed", True),
            ans("sharing.discussed-date", "2026-11-20"),
            ans("sharing.wishes", coding(SHARING, "share-direct-care")),
        ),
        status="completed",
    )


def find(resp: dict[str, Any], link_id: str) -> dict[str, Any]:
    stack = list(resp["item"])
    while stack:
        it = stack.pop()
        if it["linkId"] == link_id:
            return it
        stack.extend(it.get("item", []))
        for answer in it.get("answer", []):
            stack.extend(answer.get("item", []))
    raise KeyError(link_id)


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def by_link(issues: list[Issue], link_id: str) -> list[Issue]:
    return [i for i in issues if i.link_id == link_id]


# ---------------------------------------------------------------- the form itself


def test_questionnaire_validates_with_fhir_resources_r4b() -> None:
    path = Path(__file__).resolve().parents[2] / "fhir_profiles" / "questionnaires" / "joint-assessment.json"
    model = Questionnaire.model_validate(json.loads(path.read_text(encoding="utf-8")))
    assert model.status == "active"
    assert model.title == "Joint health and social care assessment"


def test_questionnaire_metadata(q: dict[str, Any]) -> None:
    assert q["resourceType"] == "Questionnaire"
    assert q["id"] == "joint-assessment"
    assert (
        q["url"]
        == JOINT_ASSESSMENT_URL
        == "https://sharedcare.example.org/fhir/Questionnaire/joint-assessment"
    )
    assert (q["version"], q["name"], q["status"]) == ("1.1.0", "JointAssessment", "active")
    assert q["subjectType"] == ["Patient"]


def test_questionnaire_has_no_design_problems(q: dict[str, Any]) -> None:
    assert check_questionnaire(q) == []


def test_top_level_sections_in_order(q: dict[str, Any]) -> None:
    assert [i["linkId"] for i in q["item"]] == list(SECTIONS)
    assert all(i["type"] == "group" and i.get("required") for i in q["item"])


def test_every_section_has_the_profession_extension(q: dict[str, Any]) -> None:
    for section in q["item"]:
        values = [e["valueCode"] for e in section.get("extension", []) if e["url"] == SECTION_PROFESSION_URL]
        assert values == [SECTIONS[section["linkId"]]], section["linkId"]
        assert section_profession(q, section["linkId"]) == SECTIONS[section["linkId"]]


def test_profession_extension_only_on_sections(q: dict[str, Any]) -> None:
    tops = {i["linkId"] for i in q["item"]}
    for link_id, item in questionnaire_index(q).items():
        if link_id not in tops:
            assert all(e["url"] != SECTION_PROFESSION_URL for e in item.get("extension", [])), link_id


def test_link_ids_unique_readable_and_prefixed_by_their_section(q: dict[str, Any]) -> None:
    all_ids = [it["linkId"] for it in _all_items(q["item"])]
    assert len(all_ids) == len(set(all_ids))
    for link_id in all_ids:
        assert link_id == link_id.lower() and " " not in link_id
        assert section_of(link_id) == section_of(link_id, q)


def _all_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for it in items:
        out.append(it)
        out.extend(_all_items(it.get("item", [])))
    return out


def test_all_ten_care_act_outcomes(q: dict[str, Any]) -> None:
    """The ten outcomes in the words of the Care and Support (Eligibility Criteria) Regulations 2015,
    regulation 2(2)(a)-(j), each with whether it can be achieved, the level of need and the impact on
    wellbeing."""
    index = questionnaire_index(q)
    care_act = [i for i in index["care-act"]["item"] if i["type"] == "group"]
    assert {i["linkId"]: i["text"] for i in care_act} == CARE_ACT_OUTCOMES
    assert [i["prefix"] for i in care_act] == [f"({c})" for c in "abcdefghij"]
    assert all(i["code"][0]["display"] == i["text"] for i in care_act)
    for link_id in CARE_ACT_OUTCOMES:
        level = index[f"{link_id}.level"]
        assert level["type"] == "choice" and level["required"] is True
        assert [o["valueCoding"]["code"] for o in level["answerOption"]] == ["low", "moderate", "high", "severe"]
        assert {o["valueCoding"]["system"] for o in level["answerOption"]} == {LEVEL}
        assert level["enableWhen"] == index[f"{link_id}.significant-impact"]["enableWhen"]
        need = index[f"{link_id}.need"]
        assert need["type"] == "choice" and need["required"] is True
        codes = {o["valueCoding"]["code"] for o in need["answerOption"]}
        assert {
            "achieves-unaided",
            "needs-assistance",
            "significant-pain-distress-anxiety",
            "endangers-health-safety",
            "takes-significantly-longer",
        } <= codes
        impact = index[f"{link_id}.significant-impact"]
        assert impact["type"] == "boolean" and impact["enableBehavior"] == "all"
        assert index[f"{link_id}.impact"]["type"] == "text"


def test_all_nine_health_needs(q: dict[str, Any]) -> None:
    index = questionnaire_index(q)
    health = [i for i in index["health"]["item"] if i["type"] == "group"]
    assert {i["linkId"]: i["text"] for i in health} == HEALTH_NEEDS
    for link_id in HEALTH_NEEDS:
        need = index[f"{link_id}.need"]
        assert need["type"] == "choice" and need["required"] is True
        assert [o["valueCoding"]["code"] for o in need["answerOption"]] == [
            "none",
            "low",
            "moderate",
            "high",
            "severe",
        ]
        assert index[f"{link_id}.notes"]["type"] == "text"
    assert index["health.falls.history"]["type"] == "boolean"


def test_snomed_codes_on_items(q: dict[str, Any]) -> None:
    index = questionnaire_index(q)
    sct = {
        (c["code"], lid)
        for lid, it in index.items()
        for c in it.get("code", [])
        if c["system"] == "http://snomed.info/sct"
    }
    assert ("22253000", "health.pain.has-pain") in sct
    assert ("399912005", "health.skin.pressure-ulcer") in sct


def test_demographics_are_prefillable_with_documented_keys(q: dict[str, Any]) -> None:
    sources = prefill_sources(q)
    assert sources["about-me.name"] == "Patient.name"
    assert sources["about-me.birth-date"] == "Patient.birthDate"
    assert sources["about-me.nhs-number"] == "Patient.identifier[nhs-number]"
    assert sources["about-me.gp-practice"] == "Patient.generalPractitioner"
    assert sources["about-me.contacts"] == "RelatedPerson"
    assert {"about-me.address", "about-me.phone", "about-me.contacts.name"} <= set(sources)
    assert set(sources.values()) <= set(PREFILL_SOURCES)
    ext_urls = {e["url"] for it in questionnaire_index(q).values() for e in it.get("extension", [])}
    assert PREFILL_SOURCE_URL in ext_urls


def test_carer_section_asks_about_the_carers_assessment(q: dict[str, Any]) -> None:
    index = questionnaire_index(q)
    carer = index["carers.carer"]
    assert carer["repeats"] is True
    assert carer["enableWhen"] == [{"question": "carers.has-carer", "operator": "=", "answerBoolean": True}]
    assert (
        index["carers.carer.assessment-wanted"]["enableWhen"][0]["question"]
        == "carers.carer.assessment-offered"
    )
    assert "carers.carer.own-needs" in index


def test_loader_returns_a_fresh_copy() -> None:
    first = load_joint_assessment()
    first["item"].clear()
    assert load_joint_assessment()["item"]


# ---------------------------------------------------------------- sections and professions


def test_section_of_maps_answers_to_their_section(q: dict[str, Any]) -> None:
    assert section_of("care-act.nutrition.need") == "care-act"
    assert section_of("health.falls.history", q) == "health"
    assert section_of("carers.carer.assessment-wanted", q) == "carers"
    with pytest.raises(KeyError):
        section_of("nope.nothing", q)


def test_section_profession_accepts_nested_link_ids(q: dict[str, Any]) -> None:
    assert section_profession(q, "care-act.nutrition.need") == "social-care"
    assert section_profession(q, "health.pain.score") == "health"
    assert section_profession(q, "sharing.wishes") == "any"
    with pytest.raises(KeyError):
        section_profession(q, "not-a-section")


def test_section_without_extension_is_any_and_bad_value_rejected() -> None:
    form = {"item": [{"linkId": "s", "type": "group", "item": [{"linkId": "s.q", "type": "string"}]}]}
    assert section_profession(form, "s.q") == "any"
    form["item"][0]["extension"] = [{"url": SECTION_PROFESSION_URL, "valueCode": "nursing"}]
    with pytest.raises(ValueError):
        section_profession(form, "s")


# ---------------------------------------------------------------- validating responses


def test_complete_response_is_valid_when_completing(q: dict[str, Any]) -> None:
    resp = complete_response()
    QuestionnaireResponse.model_validate(resp)  # and it is a well-formed R4 resource
    assert validate_response(q, resp, completing=True) == []


def test_partial_in_progress_response_is_fine(q: dict[str, Any]) -> None:
    resp = response(
        grp("about-me", ans("about-me.what-matters", "My garden")),
        grp("health", grp("health.pain", ans("health.pain.has-pain", False))),
    )
    assert validate_response(q, resp, completing=False) == []


def test_partial_response_is_incomplete_when_completing(q: dict[str, Any]) -> None:
    resp = response(grp("about-me", ans("about-me.what-matters", "My garden")))
    issues = validate_response(q, resp, completing=True)
    assert issues and all(i.code == "required" and i.severity == "error" for i in issues)
    missing = {i.link_id for i in issues}
    assert {
        "about-me.name",
        "about-me.birth-date",
        "care-act.nutrition.need",
        "health.falls.need",
        "carers.has-carer",
        "sharing.discussed",
    } <= missing
    assert "about-me.what-matters" not in missing
    # questions hidden behind unanswered conditions are not demanded
    assert not missing & {
        "health.falls.count",
        "carers.carer.name",
        "sharing.wishes",
        "care-act.nutrition.significant-impact",
    }
    assert all(i.link_id in i.message for i in issues)


def test_missing_required_item_is_named_with_its_place(q: dict[str, Any]) -> None:
    resp = complete_response()
    outcome = find(resp, "care-act.nutrition")
    outcome["item"] = [i for i in outcome["item"] if i["linkId"] != "care-act.nutrition.significant-impact"]
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("required", "care-act.nutrition.significant-impact")]
    assert "'care-act.nutrition.significant-impact'" in issues[0].message
    assert validate_response(q, resp, completing=False) == []


def test_required_inside_a_repeating_group_instance(q: dict[str, Any]) -> None:
    resp = complete_response()
    carers = find(resp, "carers")
    carers["item"].append(
        grp(
            "carers.carer",
            ans("carers.carer.willing-able", True),
            ans("carers.carer.assessment-offered", False),
        )
    )
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("required", "carers.carer.name")]


def test_wrong_answer_type(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.pain.has-pain")["answer"] = [{"valueString": "yes"}]
    issues = validate_response(q, resp, completing=False)
    assert len(issues) == 1
    issue = issues[0]
    assert (issue.severity, issue.code, issue.link_id) == ("error", "value", "health.pain.has-pain")
    assert "valueBoolean" in issue.message and "health.pain.has-pain" in issue.message
    assert issue.expression == "QuestionnaireResponse.item[2].item[6].item[1].answer[0].valueString"
    assert issue.to_json() == {
        "severity": "error",
        "code": "value",
        "diagnostics": issue.message,
        "expression": [issue.expression],
    }


@pytest.mark.parametrize(
    ("link_id", "answer", "fragment"),
    [
        ("health.falls.count", {"valueInteger": 2.5}, "whole number"),
        ("health.falls.count", {"valueDecimal": 2.0}, "valueInteger"),
        ("health.falls.count", {"valueInteger": True}, "whole number"),
        ("about-me.birth-date", {"valueDate": "02/03/1941"}, "not a FHIR date"),
        ("about-me.birth-date", {"valueString": "1941-03-02"}, "valueDate"),
        ("about-me.name", {"valueString": "   "}, "non-blank"),
        ("health.nutrition-hydration.weight", {"valueDecimal": "51.5"}, "number"),
        ("about-me.gp-practice", {"valueString": "The Surgery"}, "valueReference"),
        ("care-act.nutrition.need", {"valueString": "needs-assistance"}, "valueCoding"),
    ],
)
def test_value_type_and_shape_errors(
    q: dict[str, Any], link_id: str, answer: dict[str, Any], fragment: str
) -> None:
    resp = complete_response()
    find(resp, link_id)["answer"] = [answer]
    issues = errors(validate_response(q, resp, completing=False))
    assert [(i.code, i.link_id) for i in issues] == [("value", link_id)]
    assert fragment in issues[0].message


def test_several_values_in_one_answer(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "about-me.name")["answer"] = [{"valueString": "Ada", "valueBoolean": True}]
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("structure", "about-me.name")]


def test_unknown_link_id(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.pain")["item"].append(ans("health.pain.colour", "red"))
    issues = validate_response(q, resp, completing=True)
    assert [(i.severity, i.code, i.link_id) for i in issues] == [("error", "structure", "health.pain.colour")]
    assert "'health.pain.colour' is not in Questionnaire" in issues[0].message
    assert issues[0].expression == "QuestionnaireResponse.item[2].item[6].item[3]"


def test_known_link_id_in_the_wrong_place(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.skin")["item"].append(ans("health.pain.score", 3))
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("structure", "health.pain.score")]
    assert "misplaced" in issues[0].message and "'health.pain'" in issues[0].message


def test_answer_to_a_disabled_question(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.falls.history")["answer"] = [{"valueBoolean": False}]
    for completing in (False, True):
        issues = validate_response(q, resp, completing=completing)
        # falls.count is disabled (no falls) and so, in turn, is falls.referral (count counts as unanswered)
        assert [(i.code, i.link_id) for i in issues] == [
            ("business-rule", "health.falls.count"),
            ("business-rule", "health.falls.referral"),
        ]
        assert "not enabled" in issues[0].message and "health.falls.count" in issues[0].message


def test_answers_inside_a_disabled_group_are_reported_once(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "carers.has-carer")["answer"] = [{"valueBoolean": False}]
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("business-rule", "carers.carer")]


def test_removing_the_disabled_answers_fixes_it(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "carers.has-carer")["answer"] = [{"valueBoolean": False}]
    carers = find(resp, "carers")
    carers["item"] = [i for i in carers["item"] if i["linkId"] != "carers.carer"]
    assert validate_response(q, resp, completing=True) == []


def test_enable_behavior_all_on_care_act_impact(q: dict[str, Any]) -> None:
    resp = complete_response()
    outcome = find(resp, "care-act.nutrition")
    outcome["item"][0]["answer"] = [{"valueCoding": coding(ACHIEVE, "achieves-unaided")}]
    issues = validate_response(q, resp, completing=True)
    assert {(i.code, i.link_id) for i in issues} == {
        ("business-rule", "care-act.nutrition.level"),
        ("business-rule", "care-act.nutrition.significant-impact"),
        ("business-rule", "care-act.nutrition.impact"),
    }


def test_caring_for_child_not_applicable_needs_no_impact(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "care-act.caring-for-child.need")["answer"] = [
        {"valueCoding": coding(ACHIEVE, "not-applicable")}
    ]
    assert validate_response(q, resp, completing=True) == []
    # but "not applicable" is not an option of the other outcomes
    find(resp, "care-act.clothing.need")["answer"] = [{"valueCoding": coding(ACHIEVE, "not-applicable")}]
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("code-invalid", "care-act.clothing.need")]


def test_enable_behavior_any_on_sharing_objection(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "sharing.wishes")["answer"] = [{"valueCoding": coding(SHARING, "object-all")}]
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("required", "sharing.objection-details")]
    find(resp, "sharing")["item"].append(ans("sharing.objection-details", "Not the hospice"))
    assert validate_response(q, resp, completing=True) == []


def test_boolean_false_branch_enables_its_own_questions(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "sharing")["item"] = [ans("sharing.discussed", False)]
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("required", "sharing.not-discussed-reason")]


def test_choice_code_not_in_options(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.skin.need")["answer"] = [{"valueCoding": coding(LEVEL, "critical")}]
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("code-invalid", "health.skin.need")]
    assert "'critical'" in issues[0].message and "health.skin.need" in issues[0].message


def test_choice_code_from_another_system_is_not_an_option(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.skin.need")["answer"] = [{"valueCoding": coding("http://snomed.info/sct", "none")}]
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("code-invalid", "health.skin.need")]


def test_open_choice_takes_free_text_and_other_codes(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "about-me.contacts.relationship")["answer"] = [{"valueString": "Godson"}]
    assert validate_response(q, resp, completing=True) == []
    find(resp, "about-me.contacts.relationship")["answer"] = [
        {"valueCoding": coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GRNDSON")}
    ]
    assert validate_response(q, resp, completing=True) == []


def test_several_answers_only_where_the_item_repeats(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.falls.need")["answer"].append({"valueCoding": coding(LEVEL, "high")})
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("structure", "health.falls.need")]
    assert "does not repeat" in issues[0].message
    # about-me.contacts.role repeats: two roles are fine (complete_response has them)
    assert len(find(complete_response(), "about-me.contacts.role")["answer"]) == 2


def test_group_instances_only_where_the_group_repeats(q: dict[str, Any]) -> None:
    resp = complete_response()
    health = find(resp, "health")
    health["item"].insert(1, copy.deepcopy(health["item"][0]))  # health.falls twice
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("structure", "health.falls")]
    carers = find(resp := complete_response(), "carers")
    carers["item"].append(copy.deepcopy(carers["item"][1]))  # a second carer is fine
    assert validate_response(q, resp, completing=True) == []


def test_no_answers_on_group_or_display_items(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.pain")["answer"] = [{"valueBoolean": True}]
    find(resp, "sharing")["item"].insert(0, ans("sharing.intro", "read it"))
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [
        ("structure", "health.pain"),
        ("structure", "sharing.intro"),
    ]
    assert "group item 'health.pain' cannot have answers" in issues[0].message
    assert "display item 'sharing.intro' cannot have answers" in issues[1].message


def test_repeating_group_instances_are_judged_on_their_own_answers(q: dict[str, Any]) -> None:
    resp = complete_response()
    carers = find(resp, "carers")
    carers["item"].append(
        grp(
            "carers.carer",
            ans("carers.carer.name", "Cy"),
            ans("carers.carer.willing-able", True),
            ans("carers.carer.assessment-offered", False),
            ans("carers.carer.assessment-wanted", True),
        )
    )
    issues = validate_response(q, resp, completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("business-rule", "carers.carer.assessment-wanted")]
    assert issues[0].expression == "QuestionnaireResponse.item[4].item[2].item[3]"


def test_min_max_and_max_length(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.pain.score")["answer"] = [{"valueInteger": 11}]
    find(resp, "about-me.nhs-number")["answer"] = [{"valueString": "94347659190"}]
    find(resp, "health.nutrition-hydration.weight")["answer"] = [{"valueDecimal": -1.0}]
    issues = validate_response(q, resp, completing=False)
    assert {(i.code, i.link_id) for i in issues} == {
        ("value", "health.pain.score"),
        ("value", "about-me.nhs-number"),
        ("value", "health.nutrition-hydration.weight"),
    }


def test_response_to_another_questionnaire(q: dict[str, Any]) -> None:
    resp = complete_response()
    resp["questionnaire"] = "https://example.org/Questionnaire/other"
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.expression) for i in issues] == [
        ("business-rule", "QuestionnaireResponse.questionnaire")
    ]
    resp["questionnaire"] = JOINT_ASSESSMENT_URL + "|" + q["version"]
    assert validate_response(q, resp, completing=False) == []
    # a response pinned to another version of the form is not judged by this one
    resp["questionnaire"] = JOINT_ASSESSMENT_URL + "|0.9.0"
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.expression) for i in issues] == [
        ("business-rule", "QuestionnaireResponse.questionnaire")
    ]
    assert "0.9.0" in issues[0].message and q["version"] in issues[0].message


def test_not_a_questionnaire_response(q: dict[str, Any]) -> None:
    issues = validate_response(q, {"resourceType": "Patient"}, completing=False)
    assert has_errors(issues) and issues[0].code == "structure"


def test_enabled_items_follow_the_answers(q: dict[str, Any]) -> None:
    empty = set(enabled_items(q))
    assert "health.falls.history" in empty and "health.falls.count" not in empty
    assert "carers.carer" not in empty and "carers.carer.name" not in empty
    resp = response(
        grp("carers", ans("carers.has-carer", True)),
        grp("health", grp("health.falls", ans("health.falls.history", True), ans("health.falls.count", 1))),
    )
    now = set(enabled_items(q, resp))
    assert {"carers.carer", "carers.carer.name", "health.falls.count"} <= now
    assert "health.falls.referral" not in now  # count > 1 is false for one fall
    assert "carers.carer.assessment-wanted" not in now


# ---------------------------------------------------------------- enableWhen operators, one by one


def _form(item_type: str, conditions: list[dict[str, Any]], behavior: str | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {"linkId": "t", "type": "string", "enableWhen": conditions}
    if behavior:
        target["enableBehavior"] = behavior
    return {
        "resourceType": "Questionnaire",
        "url": "urn:test",
        "status": "active",
        "item": [
            {"linkId": "s", "type": item_type, "repeats": True},
            {"linkId": "n", "type": "integer"},
            target,
        ],
    }


def _answers(link_id: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    items = [{"linkId": link_id, "answer": answers}] if answers else []
    return {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": items}


CODE = {"system": "urn:s", "code": "b"}


@pytest.mark.parametrize(
    ("item_type", "condition", "answers", "enabled"),
    [
        ("integer", {"operator": "exists", "answerBoolean": True}, [], False),
        ("integer", {"operator": "exists", "answerBoolean": True}, [{"valueInteger": 0}], True),
        ("integer", {"operator": "exists", "answerBoolean": False}, [], True),
        ("integer", {"operator": "exists", "answerBoolean": False}, [{"valueInteger": 0}], False),
        ("integer", {"operator": "=", "answerInteger": 3}, [{"valueInteger": 3}], True),
        ("integer", {"operator": "=", "answerInteger": 3}, [{"valueInteger": 4}], False),
        ("integer", {"operator": "=", "answerInteger": 3}, [{"valueInteger": 4}, {"valueInteger": 3}], True),
        ("integer", {"operator": "=", "answerInteger": 3}, [], False),
        ("integer", {"operator": "!=", "answerInteger": 3}, [{"valueInteger": 4}], True),
        ("integer", {"operator": "!=", "answerInteger": 3}, [{"valueInteger": 3}], False),
        (
            "integer",
            {"operator": "!=", "answerInteger": 3},
            [{"valueInteger": 4}, {"valueInteger": 3}],
            False,
        ),
        ("integer", {"operator": "!=", "answerInteger": 3}, [], True),  # no answer equals 3
        ("integer", {"operator": ">", "answerInteger": 3}, [{"valueInteger": 4}], True),
        ("integer", {"operator": ">", "answerInteger": 3}, [{"valueInteger": 3}], False),
        ("integer", {"operator": ">", "answerInteger": 3}, [], False),
        ("integer", {"operator": "<", "answerInteger": 3}, [{"valueInteger": 2}], True),
        ("integer", {"operator": "<", "answerInteger": 3}, [{"valueInteger": 3}], False),
        ("integer", {"operator": ">=", "answerInteger": 3}, [{"valueInteger": 3}], True),
        ("integer", {"operator": ">=", "answerInteger": 3}, [{"valueInteger": 2}], False),
        ("integer", {"operator": "<=", "answerInteger": 3}, [{"valueInteger": 3}], True),
        ("integer", {"operator": "<=", "answerInteger": 3}, [{"valueInteger": 4}], False),
        ("decimal", {"operator": ">", "answerDecimal": 2.5}, [{"valueDecimal": 2.6}], True),
        ("decimal", {"operator": "<=", "answerDecimal": 2.5}, [{"valueDecimal": 2.6}], False),
        ("date", {"operator": "<", "answerDate": "2020-01-01"}, [{"valueDate": "2019-12-31"}], True),
        ("date", {"operator": ">=", "answerDate": "2020-01-01"}, [{"valueDate": "2019-12-31"}], False),
        (
            "date",
            {"operator": ">", "answerDate": "2020-01-01"},
            [{"valueDate": "2020"}],
            False,
        ),  # precisions differ
        ("string", {"operator": "=", "answerString": "x"}, [{"valueString": "x"}], True),
        ("string", {"operator": "!=", "answerString": "x"}, [{"valueString": "y"}], True),
        ("boolean", {"operator": "=", "answerBoolean": False}, [{"valueBoolean": False}], True),
        ("boolean", {"operator": "=", "answerBoolean": False}, [], False),
        (
            "choice",
            {"operator": "=", "answerCoding": CODE},
            [{"valueCoding": {"system": "urn:s", "code": "b"}}],
            True,
        ),
        (
            "choice",
            {"operator": "=", "answerCoding": CODE},
            [{"valueCoding": {"system": "urn:x", "code": "b"}}],
            False,
        ),
        (
            "choice",
            {"operator": "!=", "answerCoding": CODE},
            [{"valueCoding": {"system": "urn:s", "code": "a"}}],
            True,
        ),
        (
            "quantity",
            {
                "operator": ">",
                "answerQuantity": {"value": 5, "system": "http://unitsofmeasure.org", "code": "kg"},
            },
            [{"valueQuantity": {"value": 6, "system": "http://unitsofmeasure.org", "code": "kg"}}],
            True,
        ),
        (
            "quantity",
            {
                "operator": ">",
                "answerQuantity": {"value": 5, "system": "http://unitsofmeasure.org", "code": "kg"},
            },
            [{"valueQuantity": {"value": 6, "system": "http://unitsofmeasure.org", "code": "g"}}],
            False,
        ),
    ],
)
def test_enable_when_operator(
    item_type: str, condition: dict[str, Any], answers: list[dict[str, Any]], enabled: bool
) -> None:
    form = _form(item_type, [{"question": "s", **condition}])
    assert ("t" in enabled_items(form, _answers("s", answers))) is enabled
    # and the validator agrees: an answer to t is accepted exactly when t is enabled
    resp = _answers("s", answers)
    resp["item"].append({"linkId": "t", "answer": [{"valueString": "here"}]})
    issues = validate_response(form, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == ([] if enabled else [("business-rule", "t")])


@pytest.mark.parametrize(
    ("behavior", "s_answer", "n_answer", "enabled"),
    [
        ("all", "x", 5, True),
        ("all", "x", 1, False),
        ("all", "y", 5, False),
        ("any", "x", 1, True),
        ("any", "y", 5, True),
        ("any", "y", 1, False),
    ],
)
def test_enable_behavior(behavior: str, s_answer: str, n_answer: int, enabled: bool) -> None:
    form = _form(
        "string",
        [
            {"question": "s", "operator": "=", "answerString": "x"},
            {"question": "n", "operator": ">=", "answerInteger": 5},
        ],
        behavior,
    )
    resp = {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": [
            {"linkId": "s", "answer": [{"valueString": s_answer}]},
            {"linkId": "n", "answer": [{"valueInteger": n_answer}]},
        ],
    }
    assert ("t" in enabled_items(form, resp)) is enabled


def test_required_only_when_enabled() -> None:
    form = _form("boolean", [{"question": "s", "operator": "=", "answerBoolean": True}])
    form["item"][2]["required"] = True
    assert validate_response(form, _answers("s", [{"valueBoolean": False}]), completing=True) == []
    issues = validate_response(form, _answers("s", [{"valueBoolean": True}]), completing=True)
    assert [(i.code, i.link_id) for i in issues] == [("required", "t")]


def test_nested_items_under_a_question_answer() -> None:
    form = {
        "resourceType": "Questionnaire",
        "url": "urn:test",
        "status": "active",
        "item": [
            {
                "linkId": "q",
                "type": "boolean",
                "item": [{"linkId": "q.why", "type": "string", "required": True}],
            }
        ],
    }
    ok = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [
            {
                "linkId": "q",
                "answer": [
                    {
                        "valueBoolean": True,
                        "item": [{"linkId": "q.why", "answer": [{"valueString": "because"}]}],
                    }
                ],
            }
        ],
    }
    assert validate_response(form, ok, completing=True) == []
    missing = copy.deepcopy(ok)
    missing["item"][0]["answer"][0]["item"] = []
    assert [(i.code, i.link_id) for i in validate_response(form, missing, completing=True)] == [
        ("required", "q.why")
    ]
    wrong_place = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [
            {
                "linkId": "q",
                "answer": [{"valueBoolean": True}],
                "item": [{"linkId": "q.why", "answer": [{"valueString": "because"}]}],
            }
        ],
    }
    issues = validate_response(form, wrong_place, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("structure", "q")]


def test_check_questionnaire_finds_design_faults() -> None:
    form = {
        "item": [
            {"linkId": "a", "type": "string"},
            {"linkId": "a", "type": "string"},
            {
                "linkId": "b",
                "type": "string",
                "enableWhen": [
                    {"question": "zz", "operator": "=", "answerString": "x"},
                    {"question": "a", "operator": "~", "answerString": "x"},
                ],
            },
            {"linkId": "g", "type": "group"},
        ]
    }
    problems = check_questionnaire(form)
    assert any("'a' is used more than once" in p for p in problems)
    assert any("unknown question 'zz'" in p for p in problems)
    assert any("no enableBehavior" in p for p in problems)
    assert any("unknown operator '~'" in p for p in problems)
    assert any("group 'g' has no items" in p for p in problems)


def test_an_invalid_answer_is_reported_once_not_through_its_dependents(q: dict[str, Any]) -> None:
    resp = complete_response()
    find(resp, "health.pain.has-pain")["answer"] = [{"valueInteger": 1}]  # pain.score depends on it
    for completing in (False, True):
        issues = validate_response(q, resp, completing=completing)
        assert [(i.code, i.link_id) for i in issues] == [("value", "health.pain.has-pain")]
    find(resp, "health.pain.has-pain")["answer"] = [{"valueBoolean": False}]
    issues = validate_response(q, resp, completing=False)
    assert [(i.code, i.link_id) for i in issues] == [("business-rule", "health.pain.score")]


# ---------------------------------------------------------------- codes and versions


STANDARD_ANSWER_SYSTEMS = {
    "about-me.gender": {"http://hl7.org/fhir/administrative-gender"},
    "about-me.contacts.relationship": {"http://terminology.hl7.org/CodeSystem/v3-RoleCode"},
    "carers.carer.relationship": {"http://terminology.hl7.org/CodeSystem/v3-RoleCode"},
    "about-me.contacts.role": {"http://terminology.hl7.org/CodeSystem/v2-0131",
                               "http://terminology.hl7.org/CodeSystem/v3-RoleCode"},
}


def test_answer_lists_use_standard_code_systems_where_they_exist_and_clear_local_codes_elsewhere(
        q: dict[str, Any]) -> None:
    for link_id, item in questionnaire_index(q).items():
        systems = {o["valueCoding"]["system"] for o in item.get("answerOption", []) if "valueCoding" in o}
        if link_id in STANDARD_ANSWER_SYSTEMS:
            assert systems == STANDARD_ANSWER_SYSTEMS[link_id], link_id
        else:
            assert all(s.startswith(CS + "assessment-") for s in systems), (link_id, systems)
        for o in item.get("answerOption", []):
            coding_ = o["valueCoding"]
            assert coding_.get("code") and coding_.get("display"), (link_id, coding_)


def test_item_codes_are_the_right_snomed_and_loinc_concepts(q: dict[str, Any]) -> None:
    expected = {
        ("http://snomed.info/sct", "1912002"): "health.falls.history",  # Fall (event)
        ("http://snomed.info/sct", "399912005"): "health.skin.pressure-ulcer",  # Pressure ulcer
        ("http://snomed.info/sct", "165232002"): "health.continence.bladder",  # Urinary incontinence
        ("http://snomed.info/sct", "72042002"): "health.continence.bowel",  # Incontinence of feces
        ("http://snomed.info/sct", "40739000"): "health.nutrition-hydration.swallowing",  # Dysphagia
        ("http://snomed.info/sct", "267036007"): "health.breathing.breathless",  # Dyspnea
        ("http://snomed.info/sct", "22253000"): "health.pain.has-pain",  # Pain
        ("http://snomed.info/sct", "386807006"): "health.memory-cognition.concerns",  # Memory impairment
        ("http://loinc.org", "54125-0"): "about-me.name",  # Patient name
        ("http://loinc.org", "21112-8"): "about-me.birth-date",  # Birth date
        ("http://loinc.org", "29463-7"): "health.nutrition-hydration.weight",  # Body weight
        ("http://loinc.org", "72514-3"): "health.pain.score",  # Pain severity 0-10 numeric rating
    }
    found = {(c["system"], c["code"]): lid for lid, it in questionnaire_index(q).items() for c in it.get("code", [])
             if c["system"] in ("http://snomed.info/sct", "http://loinc.org")}
    assert found == expected


def test_earlier_versions_stay_in_the_package_unchanged() -> None:
    from service.workflows.forms import current_packaged, packaged

    versions = {v for (url, v) in packaged() if url == JOINT_ASSESSMENT_URL}
    assert {"1.0.0", "1.1.0"} <= versions
    assert [f["version"] for f in current_packaged()] == [load_joint_assessment()["version"]]
    old = packaged()[(JOINT_ASSESSMENT_URL, "1.0.0")]
    assert check_questionnaire(old) == []
    assert "care-act.nutrition.level" not in questionnaire_index(old)  # 1.0.0 as released
    assert questionnaire_index(old)["care-act.home-safety"]["text"] == "Being able to make use of the home safely"
