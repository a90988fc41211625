"""The lists professionals work from. Each answers a searchset Bundle of what the caller may see.

- `GET /fhir/QuestionnaireResponse/$my-assessments[?status=in-progress][&practitioner=Practitioner/x]`:
  joint assessments the practitioner (default: the caller) started or answered any item of, with the
  given status (default in-progress; `status=all` for every status), newest first.
- `GET /fhir/QuestionnaireResponse/$awaiting-my-sections[?profession=health|social-care]`:
  in-progress joint assessments with a section of the caller's profession (from their SDS job role,
  service.workflows.professions) that is not yet complete (an enabled required item unanswered).
  Each entry's `search.extension` (url .../awaiting-sections, valueString) names those sections.
- `GET /fhir/CarePlan/$due-for-review[?days=14]`: draft, active and on-hold care plans whose review
  date (extension careplan-review-date) falls within the next `days` days, overdue ones included,
  soonest first. (The review date is an extension: no standard search parameter covers it.)
- `GET /fhir/Practitioner/$my-caseload[?practitioner=Practitioner/x]`: the Patients whose current
  care team has the practitioner as a member, or whose open care plan (draft, active, on-hold) they
  are accountable for.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fhir_profiles.questionnaire_validation import section_profession, validate_response
from service.fhir.outcome import bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.operations import Operation
from service.repository import Repository
from service.workflows import actors, answers, forms, lookup, professions
from service.workflows.codes import REVIEW_DATE, SD, ext_value, part
from service.workflows.params import Params

AWAITING_URL = SD + "awaiting-sections"
QR = "QuestionnaireResponse"
QR_STATUSES = ("in-progress", "completed", "amended", "stopped", "entered-in-error")


def bundle(repo: Repository, entries: Iterable[tuple[Stored, dict[str, Any] | None]]) -> FhirResponse:
    rows = []
    for stored, extra in entries:
        search: dict[str, Any] = {"mode": "match"}
        if extra:
            search.update(extra)
        rows.append({"fullUrl": f"{repo.base}/{stored.res_type}/{stored.res_id}",
                     "resource": orjson.Fragment(stored.content), "search": search})
    return FhirResponse(200, orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": len(rows),
                                           "entry": rows}))


def _practitioner(repo: Repository, params: Params) -> str:
    ref = params.reference("practitioner", "Practitioner") or actors.user_reference(repo)
    if not ref or not ref.startswith("Practitioner/"):
        raise bad_request("Whose? Call as a practitioner user, or give parameter 'practitioner=Practitioner/<id>'")
    return ref


def _contributors(response: dict[str, Any]) -> set[str]:
    found = {(response.get("author") or {}).get("reference")}
    stack = list(response.get("item") or ())
    while stack:
        it = stack.pop()
        ext = answers.author([it])
        if ext is not None:
            found.add((part(ext, "author") or {}).get("reference"))
        stack.extend(it.get("item") or ())
    found.discard(None)
    return found  # type: ignore[return-value]


def my_assessments(req: FhirRequest, repo: Repository, rtype: str, rid: str | None) -> FhirResponse:
    params = Params(req)
    repo.require("search-type", QR)
    me = _practitioner(repo, params)
    status = params.string("status") or "in-progress"
    statuses = list(QR_STATUSES) if status == "all" else [s.strip() for s in status.split(",")]
    unknown = [s for s in statuses if s not in QR_STATUSES]
    if unknown:
        raise bad_request(f"Parameter 'status': {', '.join(map(repr, unknown))} is not a QuestionnaireResponse "
                          f"status (one or more of {', '.join(QR_STATUSES)}, comma-separated, or 'all')")
    found = lookup.find(repo, QR, [("status", ",".join(statuses))],
                        lambda r: forms.is_joint(r.get("questionnaire")) and r.get("status") in statuses
                        and me in _contributors(r))
    found.sort(key=lambda s: -s.last_updated)
    return bundle(repo, ((s, None) for s in found))


def incomplete_sections(repo: Repository, response: dict[str, Any]) -> dict[str, str]:
    """section linkId -> its profession, for sections with an enabled required item unanswered."""
    q = forms.resolve(repo, response["questionnaire"])
    out: dict[str, str] = {}
    for issue in validate_response(q, response, completing=True):
        if issue.code == "required" and issue.link_id:
            sec = answers.section(issue.link_id)
            out[sec] = section_profession(q, sec)
    return out


def awaiting_my_sections(req: FhirRequest, repo: Repository, rtype: str, rid: str | None) -> FhirResponse:
    params = Params(req)
    repo.require("search-type", QR)
    mine = params.string("profession") or actors.profession(repo)
    if mine not in (professions.HEALTH, professions.SOCIAL_CARE):
        raise bad_request("Which profession? Your job role does not say; give parameter "
                          "'profession=health' or 'profession=social-care'")
    found = lookup.find(repo, QR, [("status", "in-progress")],
                        lambda r: forms.is_joint(r.get("questionnaire")) and r.get("status") == "in-progress")
    found.sort(key=lambda s: s.last_updated)
    entries = []
    for s in found:
        waiting = [sec for sec, prof in incomplete_sections(repo, s.json()).items() if prof == mine]
        if waiting:
            entries.append((s, {"extension": [{"url": AWAITING_URL, "valueString": sec} for sec in waiting]}))
    return bundle(repo, entries)


def due_for_review(req: FhirRequest, repo: Repository, rtype: str, rid: str | None) -> FhirResponse:
    params = Params(req)
    days = params.integer("days", 14)
    if days is None or days < 0 or days > 3660:
        raise bad_request("Parameter 'days' must be between 0 and 3660")
    repo.require("search-type", "CarePlan")
    until = (datetime.now(UTC).date() + timedelta(days=days)).isoformat()
    open_ = ("draft", "active", "on-hold")

    def due(r: dict[str, Any]) -> bool:
        review = ext_value(r, REVIEW_DATE)
        return r.get("status") in open_ and isinstance(review, str) and review[:10] <= until

    found = lookup.find(repo, "CarePlan", [("status", ",".join(open_))], due)
    found.sort(key=lambda s: (ext_value(s.json(), REVIEW_DATE), s.res_id))
    return bundle(repo, ((s, None) for s in found))


def my_caseload(req: FhirRequest, repo: Repository, rtype: str, rid: str | None) -> FhirResponse:
    params = Params(req)
    me = _practitioner(repo, params)
    repo.require("search-type", "Patient")
    patients = {lookup.ref(t, "subject") for t in lookup.care_teams_of_member(repo, me)}
    plans = lookup.find(repo, "CarePlan", [("status", "draft,active,on-hold")],
                        lambda r: r.get("status") in ("draft", "active", "on-hold") and lookup.ref(r, "author") == me)
    patients |= {lookup.ref(p.json(), "subject") for p in plans}
    keys = [("Patient", p.split("/", 1)[1]) for p in sorted(x for x in patients if x and x.startswith("Patient/"))]
    found = list(repo.lookup(keys).values())
    found.sort(key=lambda s: s.res_id)
    return bundle(repo, ((s, None) for s in found))


OPERATIONS = (
    Operation("my-assessments", "type", (QR,), ("GET",), my_assessments),
    Operation("awaiting-my-sections", "type", (QR,), ("GET",), awaiting_my_sections),
    Operation("due-for-review", "type", ("CarePlan",), ("GET",), due_for_review),
    Operation("my-caseload", "type", ("Practitioner",), ("GET",), my_caseload),
)
