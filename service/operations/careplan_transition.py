"""$transition: move a care plan through its life (service.workflows.careplan_rules).

`POST /fhir/CarePlan/{id}/$transition` with Parameters:
  status      valueCode, required: active | on-hold | completed | revoked | entered-in-error
  reason      valueString: why; required for on-hold, revoked and entered-in-error
  agreedWith  valueReference Patient/... or RelatedPerson/...: who the plan was agreed with (draft ->
              active; default the person)
Illegal moves get 409 naming both states and what is allowed. draft -> active records the agreement
(extension careplan-agreement: agreedBy the caller, agreedWith, date) and every move records a
Provenance (activity careplan-<status>, reason). The plan's Goals follow: active -> active, on-hold ->
on-hold, completed -> completed, revoked -> cancelled, entered-in-error -> entered-in-error (goals
already finished are left alone). Answers 200 with the plan. The same rules apply to PUT and PATCH.
"""

from __future__ import annotations

import copy

from service.fhir.outcome import OperationOutcomeError, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.operations import Operation
from service.repository import Repository
from service.workflows import careplan_rules, writes
from service.workflows.params import Params

NEEDS_REASON = ("on-hold", "revoked", "entered-in-error")
GOAL_STATUS = {"active": "active", "on-hold": "on-hold", "completed": "completed", "revoked": "cancelled",
               "entered-in-error": "entered-in-error"}
GOAL_FINAL = ("completed", "cancelled", "entered-in-error", "rejected")


def transition(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    params = Params(req)
    new_status = params.string("status", required=True)
    reason = params.string("reason")
    if new_status in NEEDS_REASON and not reason:
        raise bad_request(f"Parameter 'reason' is required to make a plan {new_status}", code="required")
    agreed_with = params.reference("agreedWith")
    if agreed_with and agreed_with.split("/", 1)[0] not in ("Patient", "RelatedPerson"):
        raise bad_request("Parameter 'agreedWith' must refer to the Patient or a RelatedPerson")
    cur = writes.load(repo, "CarePlan", rid)
    plan = cur.json()
    old_status = plan.get("status")
    careplan_rules.check_transition(rid, old_status, new_status)
    if old_status == new_status:
        raise OperationOutcomeError(409, "business-rule", f"CarePlan/{rid} is already {new_status}")
    new = {k: copy.deepcopy(v) for k, v in plan.items() if k != "meta"}
    new["status"] = new_status
    change = writes.Change(activity=f"careplan-{new_status}", reason=reason,
                           agreed_with={"reference": agreed_with} if agreed_with else None)
    stored = writes.update(repo, cur, new, change)
    goal_status = GOAL_STATUS.get(new_status)
    for ref in plan.get("goal") or ():
        gtype, _, gid = (ref.get("reference") or "").partition("/")
        if gtype != "Goal" or goal_status is None:
            continue
        try:
            goal_cur = writes.load(repo, "Goal", gid)
        except OperationOutcomeError as err:
            if err.status in (403, 404, 410):
                continue  # a goal the caller may not see, or gone: left as it is
            raise
        goal = goal_cur.json()
        if goal.get("lifecycleStatus") in GOAL_FINAL or goal.get("lifecycleStatus") == goal_status:
            continue
        goal = {k: v for k, v in goal.items() if k != "meta"}
        goal["lifecycleStatus"] = goal_status
        writes.update(repo, goal_cur, goal, writes.Change(activity=f"careplan-{new_status}", reason=reason,
                                                             sources=[f"CarePlan/{rid}/_history/{stored.version}"]))
    return write_response(req, stored, 200, repo.base, f"CarePlan/{rid} is now {new_status}")


OPERATIONS = (
    Operation("transition", "instance", ("CarePlan",), ("POST",), transition, writes=True),
)
