"""$save-answers and $amend: several professionals answering one joint assessment at the same time.

`POST /fhir/QuestionnaireResponse/{id}/$save-answers` with a Parameters body:
  response     resource: a QuestionnaireResponse holding the answers to save (any subset of the form's
               items, nested as in the form; a repeating group is sent whole, every instance)
  section      valueString, 0..*: the response holds the whole of these sections (e.g. "health"), so
               answers of theirs it leaves out are cleared
  baseVersion  valueInteger (or the If-Match header): the version of the assessment the caller read
Answers 200 with the merged assessment (new ETag).

The merge is per answer unit (service.workflows.answers) and three-way, against the caller's base
version and the current version (read with a row lock, so concurrent saves queue, never fork):
- a unit the caller did not change (same as in their base) keeps whatever is current now;
- a unit the caller changed, that nobody else changed since their base, takes the caller's answer,
  stamped with the caller as its author (answer-author extension);
- a unit the caller changed that someone else also changed since their base, to something else, is
  a conflict: nothing is saved and the answer is 412 with one issue per such linkId naming who
  changed it. So saves of different sections (or items) based on the same version both succeed, and
  two people changing the same answer never silently overwrite each other.
Only in-progress assessments take $save-answers (409 otherwise).

`POST /fhir/QuestionnaireResponse/{id}/$amend` takes the same parameters plus `reason`
(valueString, required) and works on a completed or amended assessment: the new version has status
amended, must still be complete (422 naming the missing linkIds), and its Provenance carries the reason.
"""

from __future__ import annotations

import copy
from typing import Any

from service.fhir.outcome import Issue, OperationOutcomeError, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.fhir.stored import Stored
from service.operations import Operation
from service.repository import Repository
from service.workflows import answers, forms, writes
from service.workflows.codes import part
from service.workflows.params import Params

RTYPE = "QuestionnaireResponse"


def load_assessment(repo: Repository, rid: str) -> tuple[Stored, dict[str, Any], dict[str, Any]]:
    cur = writes.load(repo, RTYPE, rid)
    current = cur.json()
    if not forms.is_joint(current.get("questionnaire")):
        raise OperationOutcomeError(422, "business-rule", f"{RTYPE}/{rid} is not a joint assessment")
    return cur, current, forms.resolve(repo, current["questionnaire"])


def base_version(req: FhirRequest, params: Params, cur: Stored, *, required: bool) -> int | None:
    base = params.integer("baseVersion")
    if base is None:
        base = req.if_match()
    if base is None:
        if required:
            raise OperationOutcomeError(
                428, "required", "Say which version of the assessment your answers are based on: parameter "
                "'baseVersion' or the If-Match header (the ETag you read), so no one's answers are overwritten")
        return None
    if base < 1 or base > cur.version:
        raise precondition(f"{RTYPE}/{cur.res_id} has no version {base} (it is at version {cur.version})")
    return base


def precondition(text: str, issues: list[Issue] | None = None) -> OperationOutcomeError:
    return OperationOutcomeError(412, "conflict", text, issues=issues)


def _who(unit_items: list[dict[str, Any]] | None) -> str:
    ext = answers.author(unit_items)
    if ext is None:
        return "someone else"
    who = part(ext, "author") or {}
    org = part(ext, "organisation") or {}
    name = who.get("reference") or who.get("display") or "someone else"
    return f"{name} ({org['reference']})" if org.get("reference") else name


def merge(req: FhirRequest, repo: Repository, rid: str, *, amend: bool) -> FhirResponse:
    params = Params(req)
    cur, current, q = load_assessment(repo, rid)
    status = current.get("status")
    if amend and status not in ("completed", "amended"):
        raise OperationOutcomeError(409, "business-rule", f"{RTYPE}/{rid} is {status}: $amend changes a completed "
                                    "assessment; save answers to one in progress with $save-answers")
    if not amend and status != "in-progress":
        raise OperationOutcomeError(409, "business-rule", f"{RTYPE}/{rid} is {status}: change it with $amend "
                                    "and a reason")
    reason = params.string("reason", required=amend)
    base = base_version(req, params, cur, required=True)
    fragment = params.resource("response")
    if fragment is None or fragment.get("resourceType") != RTYPE:
        raise bad_request("Parameter 'response' (a QuestionnaireResponse holding the answers to save) is required",
                          code="required")
    if fragment.get("questionnaire") not in (None, current["questionnaire"]):
        raise OperationOutcomeError(422, "business-rule", f"The answers are to {fragment['questionnaire']!r}; "
                                    f"this assessment answers {current['questionnaire']!r}")
    sections = [str(s) for s in params.values("section")]
    known_sections = [i["linkId"] for i in q.get("item") or ()]
    for s in sections:
        if s not in known_sections:
            raise bad_request(f"'{s}' is not a section of the form (sections: {', '.join(known_sections)})")
    try:
        submitted = answers.collect(q, fragment, strict=True)
    except answers.UnknownItems as err:
        raise OperationOutcomeError(422, "processing", str(err), issues=[
            Issue("error", "structure", text, (f"QuestionnaireResponse.item.where(linkId='{lid}')",))
            for lid, text in err.problems]) from None
    base_version_stored = repo.version(RTYPE, rid, base) if base != cur.version else None
    base_json = current if base_version_stored is None or base_version_stored.content is None \
        else base_version_stored.json()
    base_units = answers.collect(q, base_json)
    cur_units = answers.collect(q, current)
    order = answers.unit_ids(q)
    scope = set(submitted) | {u for u in order if answers.section(u) in sections}
    merged = dict(cur_units)
    conflicts: list[Issue] = []
    for unit in (u for u in order if u in scope):
        mine, theirs, was = (answers.content(x.get(unit)) for x in (submitted, cur_units, base_units))
        if mine == theirs or mine == was:
            continue  # nothing to do, or the caller did not change it
        if theirs != was:
            conflicts.append(Issue("error", "conflict", f"item '{unit}' was changed by {_who(cur_units.get(unit))} "
                                   f"after version {base} that your change is based on; read the assessment again "
                                   "and re-apply your change", (f"QuestionnaireResponse.item.where(linkId='{unit}')",)))
            continue
        if unit in submitted:
            merged[unit] = submitted[unit]
        else:
            merged.pop(unit, None)
    if conflicts:
        names = ", ".join(i.diagnostics.split("'")[1] for i in conflicts)
        raise precondition(f"Conflict on {names}: " + "; ".join(i.diagnostics for i in conflicts), conflicts)
    new = {k: copy.deepcopy(v) for k, v in current.items() if k not in ("meta", "item")}
    items = answers.build(q, merged)
    if items:
        new["item"] = items
    if amend:
        new["status"] = "amended"
    change = writes.Change(activity="amend-assessment" if amend else "save-answers", reason=reason)
    stored = writes.update(repo, cur, new, change)
    return write_response(req, stored, 200, repo.base, f"Saved answers to {RTYPE}/{rid}")


def save_answers(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    return merge(req, repo, rid, amend=False)


def amend(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    return merge(req, repo, rid, amend=True)


OPERATIONS = (
    Operation("save-answers", "instance", (RTYPE,), ("POST",), save_answers, writes=True),
    Operation("amend", "instance", (RTYPE,), ("POST",), amend, writes=True),
)
