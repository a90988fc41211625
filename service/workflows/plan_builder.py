"""From a finished joint assessment to a draft care plan: needs -> goals and activities. Pure.

Needs identified (each becomes an activity: what, which organisation, by when; and a Goal):
- a Care Act outcome the person cannot achieve (care-act.<outcome>.need other than achieves-unaided /
  not-applicable): social care, within 2 / 7 / 14 / 28 days for a severe / high / moderate / low level
  of need (care-act.<outcome>.level; 14 when the form version has no level), and within 7 at most when
  achieving it unaided endangers health or safety. Each such outcome with a significant impact on
  wellbeing is marked an eligible need when the person's needs meet the eligibility criteria as a
  whole (regulation 2(1): the needs arise from an impairment or illness, two or more outcomes cannot
  be achieved, and there is a significant impact on wellbeing);
- a health need at level low..severe (health.<need>.need): health, within 2 / 7 / 14 / 28 days for
  severe / high / moderate / low;
- referrals the assessors asked for: falls service (health.falls.referral), dietitian
  (health.nutrition-hydration.dietitian-referral), medicines review by the GP practice
  (health.medicines.review), safeguarding (risks.safeguarding-referral, social care, 1 day);
- high or medium risks (risks.risk.*), carer's assessments wanted (carers.carer.assessment-wanted,
  social care) and suggested technology-enabled care (tec.suggested).
The person's own goals are the words they gave in about-me.what-matters and about-me.outcomes-wanted,
kept verbatim as Goal.description.text (expressedBy the Patient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fhir_profiles.questionnaire_validation import questionnaire_index
from service.workflows import answers
from service.workflows.codes import AUTHORED_BY, CARE_PLAN_NEED, REVIEW_DATE, SNOMED

HEALTH_DAYS = {"severe": 2, "high": 7, "moderate": 14, "low": 28}
UNMET = {"needs-assistance", "significant-pain-distress-anxiety", "endangers-health-safety",
         "takes-significantly-longer"}
PERSONS_OWN = CARE_PLAN_NEED  # person's goals use code "what-matters" / "outcomes-wanted"
ELIGIBLE_NOTE = ("Eligible need under the Care Act 2014: the Care and Support (Eligibility Criteria) "
                 "Regulations 2015, regulation 2(1)")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


@dataclass
class Performers:
    """Who does what: Reference dicts for each profession's organisation and the GP practice."""

    health: dict[str, Any]
    social_care: dict[str, Any]
    gp: dict[str, Any] | None = None

    def of(self, profession: str) -> dict[str, Any]:
        if profession == "gp" and self.gp:
            return self.gp
        return self.social_care if profession == "social-care" else self.health


@dataclass
class Need:
    code: str  # the need's linkId, e.g. care-act.nutrition
    display: str
    profession: str  # health | social-care | gp
    description: str
    days: int
    reason: str | None = None
    note: str | None = None


@dataclass
class Plan:
    care_plan: dict[str, Any]
    goals: list[dict[str, Any]] = field(default_factory=list)  # person's own goals first, then need goals
    goal_of_activity: list[int | None] = field(default_factory=list)  # activity i -> index into goals


def _code(v: Any) -> str | None:
    return v.get("code") if isinstance(v, dict) else None


def _display(v: Any) -> str:
    return (v.get("display") or v.get("code") or "") if isinstance(v, dict) else str(v)


def _label(index: dict[str, dict[str, Any]], link_id: str, v: Any) -> str:
    """A coded answer's display as the form words it (else the answer's own display or code)."""
    code = _code(v)
    for option in (index.get(link_id) or {}).get("answerOption") or ():
        if code is not None and (option.get("valueCoding") or {}).get("code") == code:
            return str(option["valueCoding"].get("display") or code)
    return _display(v)


def needs(q: dict[str, Any], units: answers.Units) -> list[Need]:
    index = questionnaire_index(q)
    out: list[Need] = []
    outcomes = [g for g in (index.get("care-act") or {}).get("item") or () if g.get("type") == "group"]
    unmet = [g for g in outcomes if _code(answers.value(units, f"{g['linkId']}.need")) in UNMET]
    eligible = (answers.value(units, "care-act.needs-from-impairment") is True and len(unmet) >= 2
                and any(answers.value(units, f"{g['linkId']}.significant-impact") is True for g in unmet))
    for group in unmet:
        g = group["linkId"]
        achievement = answers.value(units, f"{g}.need")
        level = _code(answers.value(units, f"{g}.level"))
        impact = answers.value(units, f"{g}.impact")
        significant = answers.value(units, f"{g}.significant-impact") is True
        days = HEALTH_DAYS.get(level or "", 14)
        if _code(achievement) == "endangers-health-safety":
            days = min(days, 7)
        reason = _label(index, f"{g}.need", achievement) + (f"; level of need: {level}" if level else "")
        out.append(Need(g, group.get("text", g), "social-care",
                        f"Support with {_lower_first(group.get('text', g))}" + (f": {impact}" if impact else ""),
                        days, reason=reason, note=ELIGIBLE_NOTE if eligible and significant else None))
    for group in (index.get("health") or {}).get("item") or ():
        if group.get("type") != "group":
            continue
        g = group["linkId"]
        level = _code(answers.value(units, f"{g}.need"))
        if level not in HEALTH_DAYS:
            continue
        notes = answers.value(units, f"{g}.notes")
        out.append(Need(g, group.get("text", g), "health",
                        f"{group.get('text', g)}: {level} need" + (f" ({notes})" if notes else ""),
                        HEALTH_DAYS[level], reason=f"Level of need: {level}"))
    if answers.value(units, "health.falls.referral") is True:
        out.append(Need("health.falls.referral", "Falls service referral", "health",
                        "Refer to the falls prevention service", 14))
    if answers.value(units, "health.nutrition-hydration.dietitian-referral") is True:
        out.append(Need("health.nutrition-hydration.dietitian-referral", "Dietitian referral", "health",
                        "Refer to a dietitian (MUST score 2 or more)", 14))
    if answers.value(units, "health.medicines.review") is True:
        out.append(Need("health.medicines.review", "Medicines review", "gp",
                        "Structured medication review (10 or more medicines)", 28))
    if answers.value(units, "risks.safeguarding-referral") is True:
        out.append(Need("risks.safeguarding-referral", "Safeguarding referral", "social-care",
                        "Make a safeguarding referral", 1))
    for inst in units.get("risks.risk") or ():
        one = {"risks.risk": [inst]}
        level = _code(answers.value(one, "risks.risk.level"))
        if level in ("high", "medium"):
            kind = answers.value(one, "risks.risk.type")
            mitigation = answers.value(one, "risks.risk.mitigation")
            kind_text = _label(index, "risks.risk.type", kind)
            out.append(Need("risks.risk", f"Risk: {kind_text}", "health" if _code(kind) in (
                "risk-falls", "risk-pressure-damage", "risk-medicines") else "social-care",
                f"Reduce the {level} risk: {kind_text}" + (f" ({mitigation})" if mitigation else ""),
                7 if level == "high" else 28))
    for inst in units.get("carers.carer") or ():
        one = {"carers.carer": [inst]}
        if answers.value(one, "carers.carer.assessment-wanted") is True:
            name = answers.value(one, "carers.carer.name") or "the carer"
            out.append(Need("carers.carer.assessment-wanted", "Carer's assessment", "social-care",
                            f"Carer's assessment for {name}", 28))
    suggested = answers.values(units, "tec.suggested")
    if suggested:
        out.append(Need("tec.suggested", "Technology-enabled care", "social-care",
                        "Arrange technology-enabled care: " + ", ".join(_label(index, "tec.suggested", s)
                                                                         for s in suggested), 28))
    return out


def _iso(d: date) -> str:
    return d.isoformat()


def build(q: dict[str, Any], response: dict[str, Any], response_ref: str, *, patient_ref: str, today: date,
          review: date, coordinator: dict[str, Any], performers: Performers, contributors: list[dict[str, Any]],
          care_teams: list[str], authoring_org: str | None) -> Plan:
    units = answers.collect(q, response)
    plan = Plan(care_plan={})
    own = [("what-matters", "What matters to me"), ("outcomes-wanted", "What I want to achieve")]
    for code, display in own:
        words = answers.value(units, f"about-me.{code}")
        if isinstance(words, str) and words.strip():
            plan.goals.append({
                "resourceType": "Goal", "lifecycleStatus": "proposed",
                "category": [{"coding": [{"system": PERSONS_OWN, "code": code, "display": display}]}],
                "description": {"text": words},
                "subject": {"reference": patient_ref},
                "expressedBy": {"reference": patient_ref},
                "startDate": _iso(today),
                "target": [{"dueDate": _iso(review)}],
            })
    activities = []
    for need in needs(q, units):
        goal_index = None
        if not need.code.endswith(("referral", "review", "assessment-wanted")) and need.code != "risks.risk":
            plan.goals.append({
                "resourceType": "Goal", "lifecycleStatus": "proposed",
                "category": [{"coding": [{"system": CARE_PLAN_NEED, "code": need.code, "display": need.display}]}],
                "description": {"text": f"{need.display}: needs met"},
                "subject": {"reference": patient_ref},
                "startDate": _iso(today),
                "target": [{"dueDate": _iso(review)}],
            })
            goal_index = len(plan.goals) - 1
        detail: dict[str, Any] = {
            "code": {"coding": [{"system": CARE_PLAN_NEED, "code": need.code, "display": need.display}],
                     "text": need.display},
            "status": "not-started",
            "description": need.description,
            "performer": [performers.of(need.profession)],
            "scheduledPeriod": {"start": _iso(today), "end": _iso(today + timedelta(days=need.days))},
        }
        if need.reason:
            detail["reasonCode"] = [{"text": need.reason}]
        activity: dict[str, Any] = {"detail": detail}
        if need.note:
            activity["progress"] = [{"text": need.note}]
        activities.append(activity)
        plan.goal_of_activity.append(goal_index)
    name = answers.value(units, "about-me.name")
    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "extension": [{"url": REVIEW_DATE, "valueDate": _iso(review)}],
        "status": "draft",
        "intent": "plan",
        "category": [{"coding": [{"system": SNOMED, "code": "734163000", "display": "Care plan"}]}],
        "title": f"Care and support plan for {name}" if name else "Care and support plan",
        "description": f"Drafted from the joint health and social care assessment ({response_ref}); "
                       f"{len(activities)} actions. To be agreed with the person; review by {_iso(review)}.",
        "subject": {"reference": patient_ref},
        "period": {"start": _iso(today)},
        "created": _iso(today),
        "author": coordinator,
        "supportingInfo": [{"reference": response_ref}],
        "note": [{"text": f"Review due by {_iso(review)}."}],
    }
    if authoring_org:
        care_plan["extension"].append({"url": AUTHORED_BY, "valueReference": {"reference": authoring_org}})
    if contributors:
        care_plan["contributor"] = contributors
    if care_teams:
        care_plan["careTeam"] = [{"reference": t} for t in care_teams]
    if activities:
        care_plan["activity"] = activities
    plan.care_plan = care_plan
    return plan
