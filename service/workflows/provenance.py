"""Provenance for every create and update of an assessment, plan, goal or care team.

Written by the server in the same transaction as the write it describes (never by the client, never
for a Provenance: the repository stores these as server-owned, so nothing recurses; each belongs to whoever
its target belongs to). Shape (R4 Provenance):
- target: the version written (`Type/id/_history/n`);
- recorded: now; agent: type author, who = the caller (Practitioner, or a system client's identifier),
  onBehalfOf = the caller's organisation;
- activity: v3-DataOperation CREATE | UPDATE, plus this service's workflow activity code
  (codes.WORKFLOW_ACTIVITY: start-assessment, save-answers, complete-assessment, amend-assessment,
  generate-careplan, careplan-<status>, add-member, remove-member) and a text;
- reason: the purpose of use (v3-ActReason, TREAT unless the request says otherwise), with the reason
  the caller gave as its text;
- entity: what the version was derived from (role source), e.g. the assessment a plan was made from;
- meta.tag SERVER_RECORDED, which tells these apart from Provenance that clients write themselves.
"""

from __future__ import annotations

from typing import Any

from service.fhir.stored import Stored
from service.repository import Repository
from service.workflows import actors
from service.workflows.codes import (
    ACT_REASON,
    AUTHORED_BY,
    DATA_OPERATION,
    PARTICIPANT_TYPE,
    WORKFLOW_ACTIVITY,
)

TRACKED = ("QuestionnaireResponse", "CarePlan", "Goal", "CareTeam")
SERVER_RECORDED = {"system": "https://sharedcare.example.org/fhir/CodeSystem/record-origin", "code": "server-recorded",
                   "display": "Recorded by the server"}


def server_recorded(resource: dict[str, Any] | None) -> bool:
    return bool(resource) and SERVER_RECORDED["code"] in [
        t.get("code") for t in (resource or {}).get("meta", {}).get("tag") or ()]


def record(repo: Repository, stored: Stored, *, created: bool, activity: str | None = None,
           reason: str | None = None, sources: list[str] | None = None) -> Stored:
    operation = "CREATE" if created else "UPDATE"
    codings = [{"system": DATA_OPERATION, "code": operation, "display": operation.lower()}]
    if activity:
        codings.append({"system": WORKFLOW_ACTIVITY, "code": activity})
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}]},
        "who": actors.who(repo),
    }
    org = actors.organisation(repo)
    if org is not None:
        agent["onBehalfOf"] = org
    purposes = repo.ctx.purpose_of_use or ("TREAT",)
    reason_cc: dict[str, Any] = {"coding": [{"system": ACT_REASON, "code": p} for p in purposes]}
    if reason:
        reason_cc["text"] = reason
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"tag": [SERVER_RECORDED]},
        "target": [{"reference": f"{stored.res_type}/{stored.res_id}/_history/{stored.version}"}],
        "recorded": actors.now(),
        "activity": {"coding": codings, "text": activity or operation.lower()},
        "agent": [agent],
        "reason": [reason_cc],
    }
    if sources:
        prov["entity"] = [{"role": "source", "what": {"reference": s}} for s in sources]
    if org is not None:
        prov["extension"] = [{"url": AUTHORED_BY, "valueReference": org}]
    return repo.store_server_owned(prov)
