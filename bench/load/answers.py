"""Sections of the joint assessment (form 1.1.0) as a social worker saves them with $save-answers."""

from __future__ import annotations

from typing import Any

CS = "https://sharedcare.example.org/fhir/CodeSystem/"
ACHIEVE = CS + "assessment-outcome-achievement"
LEVEL = CS + "assessment-need-level"
CARE_ACT = ["care-act.nutrition", "care-act.personal-hygiene", "care-act.toilet-needs", "care-act.clothing",
            "care-act.home-safety", "care-act.habitable-home", "care-act.relationships", "care-act.work-education",
            "care-act.community", "care-act.caring-for-child"]
LEVELS = ["none", "low", "moderate", "high"]


def _ans(link_id: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [value]}


def care_act(n: int) -> dict[str, Any]:
    """The whole Care Act section; which outcome is unmet (and how much it matters) turns with n."""
    groups = []
    for k, lid in enumerate(CARE_ACT):
        if k == n % len(CARE_ACT):
            groups.append({"linkId": lid, "item": [
                _ans(f"{lid}.need", {"valueCoding": {"system": ACHIEVE, "code": "needs-assistance"}}),
                _ans(f"{lid}.level", {"valueCoding": {"system": LEVEL, "code": LEVELS[1 + n % 3]}}),
                _ans(f"{lid}.significant-impact", {"valueBoolean": True}),
                _ans(f"{lid}.impact", {"valueString": f"Needs help (visit {n})"})]})
        else:
            groups.append({"linkId": lid, "item": [
                _ans(f"{lid}.need", {"valueCoding": {"system": ACHIEVE, "code": "achieves-unaided"}})]})
    return {"linkId": "care-act", "item": [_ans("care-act.needs-from-impairment", {"valueBoolean": True}), *groups]}


def health_falls(n: int) -> dict[str, Any]:
    return {"linkId": "health", "item": [{"linkId": "health.falls", "item": [
        _ans("health.falls.need", {"valueCoding": {"system": LEVEL, "code": LEVELS[n % 4]}}),
        _ans("health.falls.history", {"valueBoolean": True}),
        _ans("health.falls.count", {"valueInteger": 1 + n % 7})]}]}


def save_body(base: int, n: int) -> dict[str, Any]:
    """A $save-answers Parameters body: the Care Act section whole (even n), or the falls answers (odd n)."""
    parts: list[dict[str, Any]] = []
    if n % 2 == 0:
        item = care_act(n)
        parts.append({"name": "section", "valueString": "care-act"})
    else:
        item = health_falls(n)
    response = {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": [item]}
    return {"resourceType": "Parameters",
            "parameter": [{"name": "response", "resource": response}, {"name": "baseVersion", "valueInteger": base},
                          *parts]}
