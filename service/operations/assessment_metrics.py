"""$assessment-metrics: the figures the reports care about, over finished joint assessments.

`GET /fhir/QuestionnaireResponse/$assessment-metrics[?from=YYYY-MM-DD][&to=YYYY-MM-DD]` (completion
date window, inclusive) answers a Parameters resource:
  assessmentsCompleted        valueInteger: completed or amended joint assessments
  completedJointly            valueInteger: both health and social-care professionals answered items
  completedByHealthOnly       valueInteger: only health professionals answered items
  completedBySocialCareOnly   valueInteger: only social-care professionals answered items
  completedByOther            valueInteger: no answer by a known profession (e.g. all by systems)
  referralToCompletion        part: count (valueInteger, those with a known start), meanDays,
                              medianDays, maxDays (valueDecimal). The start is the referral the
                              assessment is basedOn (ServiceRequest.authoredOn), else the latest
                              ServiceRequest or Task for the person made before the assessment
                              started (else the earliest made while it was in progress), else the
                              start of its episode (EpisodeOfCare.period.start); the end is the first
                              completion (an amendment does not move it).
  itemsPrefilled              valueInteger: question items pre-filled when the assessments started
  itemsAnswered               valueInteger: question items answered in the finished assessments
  prefilledShare              valueDecimal: itemsPrefilled / itemsAnswered
Who answered comes from the answer-author extensions (entered answers; pre-filled ones do not count
as a contribution). Only assessments the caller may see are counted.
"""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime
from typing import Any

import orjson

from service.fhir.outcome import bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.operations import Operation
from service.repository import Repository
from service.workflows import answers, forms, lookup
from service.workflows.codes import COMPLETED, EPISODE, PREFILLED_ITEMS, ext_value
from service.workflows.params import Params


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _date_param(params: Params, name: str) -> date | None:
    text = params.string(name)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise bad_request(f"Parameter '{name}' must be a date (YYYY-MM-DD), not {text!r}") from None


def _read(repo: Repository, ref: str | None) -> dict[str, Any] | None:
    if not ref or "/" not in ref:
        return None
    rtype, _, rid = ref.partition("/")
    found = repo.get(rtype, rid.split("/_history")[0])
    return found.json() if found is not None else None


def _started(repo: Repository, stored: Stored) -> datetime | None:
    """When the assessment was started: the time of its first version."""
    first = repo.version("QuestionnaireResponse", stored.res_id, 1)  # (of a response the caller may see)
    if first is None:
        return None
    return datetime.fromtimestamp(first.last_updated / 1_000_000, tz=UTC)


def _referral_times(repo: Repository, patient_ref: str) -> list[datetime]:
    """When each referral (ServiceRequest) or task (Task) for the person was made (authoredOn)."""
    times = []
    for rtype, param, element in (("ServiceRequest", "subject", "subject"), ("Task", "patient", "for")):
        if not repo.may("search-type", rtype):
            continue
        for s in lookup.find(repo, rtype, [(param, patient_ref)],
                             lambda r, e=element: lookup.ref(r, e) == patient_ref):
            when = _when(s.json().get("authoredOn"))
            if when is not None:
                times.append(when)
    return sorted(times)


def referral_start(repo: Repository, stored: Stored, response: dict[str, Any], patient_ref: str,
                   completed: datetime, cache: dict[str, list[datetime]]) -> datetime | None:
    """When the person was referred for this assessment: the referral it is basedOn, else the latest
    referral or task for the person made before the assessment started (else the earliest made while it
    was in progress), else the start of its episode."""
    for based in response.get("basedOn") or ():
        sr = _read(repo, based.get("reference"))
        if sr is not None and _when(sr.get("authoredOn")):
            return _when(sr.get("authoredOn"))
    if patient_ref not in cache:
        cache[patient_ref] = _referral_times(repo, patient_ref)
    started = _started(repo, stored) or completed
    before = [t for t in cache[patient_ref] if t <= started]
    if before:
        return before[-1]
    during = [t for t in cache[patient_ref] if t <= completed]
    if during:
        return during[0]
    episode = _read(repo, (ext_value(response, EPISODE) or {}).get("reference"))
    return _when(((episode or {}).get("period") or {}).get("start"))


def metrics(req: FhirRequest, repo: Repository, rtype: str, rid: str | None) -> FhirResponse:
    params = Params(req)
    since, until = _date_param(params, "from"), _date_param(params, "to")
    if since and until and until < since:
        raise bad_request(f"Parameter 'to' ({until.isoformat()}) is before 'from' ({since.isoformat()})")
    repo.require("search-type", "QuestionnaireResponse")
    finished = lookup.find(repo, "QuestionnaireResponse", [("status", "completed,amended")],
                           lambda r: forms.is_joint(r.get("questionnaire")) and r.get("status") in ("completed", "amended"))
    counts = {"joint": 0, "health": 0, "social-care": 0, "other": 0}
    durations: list[float] = []
    prefilled = answered = total = 0
    cache: dict[str, list[datetime]] = {}
    for stored in finished:
        response = stored.json()
        completed = _when(ext_value(response, COMPLETED)) or _when(response.get("authored"))
        if completed is None or (since and completed.date() < since) or (until and completed.date() > until):
            continue
        total += 1
        q = forms.resolve(repo, response["questionnaire"])
        units = answers.collect(q, response)
        profs = {c["profession"] for c in answers.contributions(units) if c["source"] == "entered"} & {
            "health", "social-care"}
        counts["joint" if len(profs) == 2 else (profs.pop() if profs else "other")] += 1
        prefilled += int(ext_value(response, PREFILLED_ITEMS) or 0)
        answered += sum(answers.answered_questions(items) for items in units.values())
        start = referral_start(repo, stored, response, response["subject"]["reference"], completed, cache)
        if start is not None and start <= completed:
            durations.append((completed - start).total_seconds() / 86400)

    def dec(x: float) -> float:
        return round(x, 2)

    timing: list[dict[str, Any]] = [{"name": "count", "valueInteger": len(durations)}]
    if durations:
        timing += [{"name": "meanDays", "valueDecimal": dec(statistics.fmean(durations))},
                   {"name": "medianDays", "valueDecimal": dec(statistics.median(durations))},
                   {"name": "maxDays", "valueDecimal": dec(max(durations))}]
    out: dict[str, Any] = {"resourceType": "Parameters", "parameter": [
        {"name": "assessmentsCompleted", "valueInteger": total},
        {"name": "completedJointly", "valueInteger": counts["joint"]},
        {"name": "completedByHealthOnly", "valueInteger": counts["health"]},
        {"name": "completedBySocialCareOnly", "valueInteger": counts["social-care"]},
        {"name": "completedByOther", "valueInteger": counts["other"]},
        {"name": "referralToCompletion", "part": timing},
        {"name": "itemsPrefilled", "valueInteger": prefilled},
        {"name": "itemsAnswered", "valueInteger": answered},
        {"name": "prefilledShare", "valueDecimal": dec(prefilled / answered) if answered else 0.0},
    ]}
    return FhirResponse(200, orjson.dumps(out))


OPERATIONS = (
    Operation("assessment-metrics", "type", ("QuestionnaireResponse",), ("GET",), metrics),
)
