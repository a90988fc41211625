"""$start-assessment: start a person's joint assessment, pre-filled from their record.

`POST /fhir/Patient/{id}/$start-assessment` with an optional Parameters body:
  episode   valueReference EpisodeOfCare/...   the episode it belongs to (extension assessment-episode)
  referral  valueReference ServiceRequest/...  the referral it answers (QuestionnaireResponse.basedOn)
Both must exist and be about the same person (422 otherwise); they are also the Provenance's sources.
Creates an in-progress QuestionnaireResponse to the current version of the joint assessment
(`questionnaire` = `url|version`), subject and source the Patient, author the caller, pre-filled
(service.workflows.prefill), and answers 201 with it. How many question items were pre-filled is in
the extension assessment-prefilled-items (valueInteger); each pre-filled answer's answer-author
extension says `source` prefilled and where it came from. If the person already has an in-progress
joint assessment, that one is returned with 200 instead: there is one assessment to contribute to.
"""

from __future__ import annotations

from typing import Any

from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.operations import Operation
from service.repository import Repository
from service.workflows import answers, forms, lookup, prefill, writes
from service.workflows.codes import AUTHORED_BY, EPISODE
from service.workflows.params import Params


def open_assessments(repo: Repository, patient_ref: str) -> list[Any]:
    return lookup.find(repo, "QuestionnaireResponse", [("subject", patient_ref), ("status", "in-progress")],
                       lambda r: lookup.ref(r, "subject") == patient_ref and forms.is_joint(r.get("questionnaire"))
                       and r.get("status") == "in-progress")


def _check_link(repo: Repository, ref: str | None, element: str, patient_ref: str, name: str) -> None:
    """The episode or referral named must exist, be visible to the caller and be about the same person."""
    if ref is None:
        return
    rtype, _, rid = ref.partition("/")
    found = repo.get(rtype, rid)
    resource = found.json() if found is not None else None
    if resource is None:
        raise OperationOutcomeError(422, "not-found", f"Parameter '{name}': {ref} is not known")
    if lookup.ref(resource, element) != patient_ref:
        raise OperationOutcomeError(422, "business-rule", f"Parameter '{name}': {ref} is about "
                                    f"{lookup.ref(resource, element) or 'someone else'}, not {patient_ref}")


def start(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    params = Params(req)
    episode = params.reference("episode", "EpisodeOfCare")
    referral = params.reference("referral", "ServiceRequest")
    patient = repo.read("Patient", rid).json()
    repo.require("create", "QuestionnaireResponse")
    patient_ref = f"Patient/{rid}"
    _check_link(repo, episode, "patient", patient_ref, "episode")
    _check_link(repo, referral, "subject", patient_ref, "referral")
    existing = open_assessments(repo, patient_ref)
    if existing:
        latest = max(existing, key=lambda s: s.last_updated)
        return write_response(req, latest, 200, repo.base,
                              f"{patient_ref} already has an assessment in progress: QuestionnaireResponse/{latest.res_id}")
    q = forms.current(repo)
    units, origin = prefill.prefill(repo, q, patient)
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{q['url']}|{q['version']}",
        "status": "in-progress",
        "subject": {"reference": patient_ref},
        "source": {"reference": patient_ref},
    }
    if referral:
        qr["basedOn"] = [{"reference": referral}]
    items = answers.build(q, units)
    if items:
        qr["item"] = items
    extensions = []
    if episode:
        extensions.append({"url": EPISODE, "valueReference": {"reference": episode}})
    org = repo.ctx.principal.organisation if repo.ctx.principal else None
    if org:
        extensions.append({"url": AUTHORED_BY, "valueReference": {"reference": org}})
    if extensions:
        qr["extension"] = extensions
    change = writes.Change(activity="start-assessment", prefilled=origin,
                           sources=sorted({patient_ref, *origin.values(), *filter(None, (episode, referral))}))
    stored = writes.create(repo, qr, change)
    return write_response(req, stored, 201, repo.base, f"Started QuestionnaireResponse/{stored.res_id}")


OPERATIONS = (
    Operation("start-assessment", "instance", ("Patient",), ("POST",), start, writes=True),
)
