"""$generate-careplan: turn a finished joint assessment into the person's draft care plan.

`POST /fhir/QuestionnaireResponse/{id}/$generate-careplan` (no body needed; optional Parameters
`coordinator` valueReference Practitioner/..., `reviewDate` valueDate). By a professional in the
person's care team (403 otherwise; system and admin callers are not care team members and may).
The assessment must be completed or amended (409 otherwise).

Creates, in one transaction, with a Provenance each (entity = the assessment version):
- Goals: the person's own goals in their own words (about-me.what-matters, about-me.outcomes-wanted,
  expressedBy the Patient) and one per identified need (service.workflows.plan_builder);
- a CarePlan, status draft, intent plan: activities (what, which organisation, by when), author =
  the accountable professional (the `coordinator` parameter, else the care team's lead, i.e. the
  participant with role SNOMED CT 768820003 |Care coordinator (occupation)|, else the caller), contributors = the
  professionals who answered the assessment and the person, careTeam, supportingInfo = the assessment
  version, review date (extension careplan-review-date, default six weeks from today, and a note).
Answers 201 with the CarePlan. Asking again for the same assessment version returns the draft already
made (200) instead of a second one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.fhir.outcome import OperationOutcomeError, bad_request, forbidden
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.operations import Operation
from service.repository import Repository
from service.workflows import actors, answers, forms, lookup, plan_builder, writes
from service.workflows.careteam_rules import lead_of
from service.workflows.codes import AUTHORED_BY
from service.workflows.params import Params

REVIEW_AFTER_DAYS = 42
PROFESSION_NAMES = {"health": "Community health services", "social-care": "Adult social care"}


def _today() -> date:
    return datetime.now(UTC).date()


def require_care_team_member(repo: Repository, teams: list[dict[str, Any]], patient_ref: str, what: str) -> None:
    me = actors.user_reference(repo)
    principal = repo.ctx.principal
    if principal is None or principal.kind not in ("practitioner",):
        return
    if not me or not any(me in lookup.members(t) for t in teams):
        raise forbidden(f"Only a professional in {patient_ref}'s care team can {what}")


def generate(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    params = Params(req)
    stored = repo.read("QuestionnaireResponse", rid)
    response = stored.json()
    if not forms.is_joint(response.get("questionnaire")):
        raise OperationOutcomeError(422, "business-rule", f"QuestionnaireResponse/{rid} is not a joint assessment")
    if response.get("status") not in ("completed", "amended"):
        raise OperationOutcomeError(409, "business-rule", f"QuestionnaireResponse/{rid} is {response.get('status')}: "
                                    "complete the assessment ($complete) before generating a care plan")
    patient_ref = response["subject"]["reference"]
    response_ref = f"QuestionnaireResponse/{rid}/_history/{stored.version}"
    teams = lookup.care_teams_of_patient(repo, patient_ref)
    require_care_team_member(repo, teams, patient_ref, "generate their care plan")
    repo.require("create", "CarePlan")
    repo.require("create", "Goal")

    drafts = lookup.find(repo, "CarePlan", [("subject", patient_ref), ("status", "draft")],
                         lambda r: r.get("status") == "draft" and lookup.ref(r, "subject") == patient_ref and any(
                             s.get("reference") == response_ref for s in r.get("supportingInfo") or ()))
    if drafts:
        return write_response(req, drafts[0], 200, repo.base,
                              f"CarePlan/{drafts[0].res_id} is already the draft made from {response_ref}")

    coordinator_ref = params.reference("coordinator", "Practitioner")
    coordinator = {"reference": coordinator_ref} if coordinator_ref else lead_of(teams)
    if coordinator is None and actors.user_reference(repo):
        coordinator = {"reference": actors.user_reference(repo)}
    if coordinator is None:
        raise OperationOutcomeError(422, "required", "The plan needs an accountable professional: give the care "
                                    "team a lead (care coordinator) or name one with parameter 'coordinator'")
    today = _today()
    review_text = params.string("reviewDate")
    try:
        review = date.fromisoformat(review_text) if review_text else today + timedelta(days=REVIEW_AFTER_DAYS)
    except ValueError:
        raise bad_request(f"Parameter 'reviewDate' must be a date (YYYY-MM-DD), not {review_text!r}") from None
    if review < today:
        raise bad_request(f"Parameter 'reviewDate' {review.isoformat()} is in the past")

    q = forms.resolve(repo, response["questionnaire"])
    units = answers.collect(q, response)
    entered = [c for c in answers.contributions(units) if c["source"] == "entered"]
    orgs: dict[str, dict[str, Any]] = {}
    for c in entered:
        if c["profession"] in PROFESSION_NAMES and c["organisation"] and c["profession"] not in orgs:
            orgs[c["profession"]] = dict(c["organisation"])
    for prof, name in PROFESSION_NAMES.items():
        orgs.setdefault(prof, {"display": name})
    gp = answers.value(units, "about-me.gp-practice")
    performers = plan_builder.Performers(health=orgs["health"], social_care=orgs["social-care"],
                                         gp=gp if isinstance(gp, dict) else None)
    contributors: list[dict[str, Any]] = []
    for c in entered:
        ref = c["author"].get("reference")
        if ref and ref.startswith("Practitioner/") and {"reference": ref} not in contributors:
            contributors.append({"reference": ref})
    contributors.append({"reference": patient_ref})
    org = actors.organisation(repo)
    plan = plan_builder.build(q, response, response_ref, patient_ref=patient_ref, today=today, review=review,
                              coordinator=coordinator, performers=performers, contributors=contributors,
                              care_teams=[f"CareTeam/{t['id']}" for t in teams],
                              authoring_org=org["reference"] if org else None)
    change = writes.Change(activity="generate-careplan", sources=[response_ref])
    goal_refs = []
    for goal in plan.goals:
        if org:
            goal["extension"] = [{"url": AUTHORED_BY, "valueReference": org}]
        goal_refs.append({"reference": f"Goal/{writes.create(repo, goal, change).res_id}"})
    care_plan = plan.care_plan
    if goal_refs:
        care_plan["goal"] = goal_refs
    for activity, index in zip(care_plan.get("activity") or (), plan.goal_of_activity):
        if index is not None:
            activity["detail"]["goal"] = [goal_refs[index]]
    created = writes.create(repo, care_plan, change)
    return write_response(req, created, 201, repo.base, f"Created draft CarePlan/{created.res_id}")


OPERATIONS = (
    Operation("generate-careplan", "instance", ("QuestionnaireResponse",), ("POST",), generate, writes=True),
)
