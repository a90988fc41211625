"""URLs and codes of the workflow's extensions and local code systems (one place, documented here).

Extensions on QuestionnaireResponse (the joint assessment):
- ANSWER_AUTHOR on each answered question item, and on each instance of a repeating group (the unit
  of authorship, see service.workflows.answers): complex, server-owned, with parts
  `author` (valueReference: the Practitioner, or an identifier of a system client),
  `organisation` (valueReference Organization), `profession` (valueCode health | social-care, absent
  when unknown), `recorded` (valueDateTime), `revision` (valueInteger: the response's versionId in
  which this answer was last set), `source` (valueCode entered | prefilled) and, for pre-filled answers,
  `sourceReference` (valueReference: the Patient, RelatedPerson or earlier QuestionnaireResponse).
- EPISODE (valueReference EpisodeOfCare): the episode the assessment belongs to.
- PREFILLED_ITEMS (valueInteger): how many question items were pre-filled when it was started.
- COMPLETED (valueDateTime): when it was first completed (kept on amendment).

Extensions on CarePlan:
- REVIEW_DATE (valueDate): when the plan is next reviewed.
- AGREEMENT (complex, server-owned): `agreedBy` (valueReference, the professional who recorded the
  agreement), `agreedWith` (valueReference, the person: the Patient unless given), `date`
  (valueDateTime); written when the plan goes from draft to active.
- STATUS_REASON (valueString): why the plan last changed status (on-hold, revoked, completed).
The accountable professional (care coordinator) is CarePlan.author.

On every resource the workflow creates: AUTHORED_BY (valueReference Organization), as in the demo data.
"""

from __future__ import annotations

SD = "https://sharedcare.example.org/fhir/StructureDefinition/"
CS = "https://sharedcare.example.org/fhir/CodeSystem/"

ANSWER_AUTHOR = SD + "answer-author"
EPISODE = SD + "assessment-episode"
PREFILLED_ITEMS = SD + "assessment-prefilled-items"
COMPLETED = SD + "assessment-completed"
REVIEW_DATE = SD + "careplan-review-date"
AGREEMENT = SD + "careplan-agreement"
STATUS_REASON = SD + "careplan-status-reason"
AUTHORED_BY = SD + "authoring-organisation"

WORKFLOW_ACTIVITY = CS + "workflow-activity"  # Provenance.activity codes of this service
CARE_PLAN_NEED = CS + "care-plan-need"  # the need an activity or goal addresses (section linkIds)
CLIENT_ID = "https://sharedcare.example.org/fhir/Id/client-id"
USER_ID = "https://sharedcare.example.org/fhir/Id/user-name"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"

DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SNOMED = "http://snomed.info/sct"
CARE_COORDINATOR = "768820003"  # SNOMED CT |Care coordinator (occupation)|: the CareTeam lead

SERVER_OWNED_QR = (ANSWER_AUTHOR, PREFILLED_ITEMS, COMPLETED)


def ext_value(resource: dict, url: str, key: str | None = None):  # type: ignore[no-untyped-def, type-arg]
    """The value of the first extension with `url` (its value[x], or the whole extension if complex)."""
    for ext in resource.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == url:
            if key is not None:
                return ext.get(key)
            for k, v in ext.items():
                if k.startswith("value"):
                    return v
            return ext
    return None


def set_ext(resource: dict, url: str, ext: dict | None) -> None:  # type: ignore[type-arg]
    """Replace every extension with `url` by `ext` (or remove them when ext is None)."""
    kept = [e for e in resource.get("extension") or () if not (isinstance(e, dict) and e.get("url") == url)]
    if ext is not None:
        kept.append({"url": url, **ext})
    if kept:
        resource["extension"] = kept
    else:
        resource.pop("extension", None)


def part(ext: dict, name: str):  # type: ignore[no-untyped-def, type-arg]
    """The value of sub-extension `name` of a complex extension."""
    for sub in ext.get("extension") or ():
        if sub.get("url") == name:
            return next((v for k, v in sub.items() if k.startswith("value")), None)
    return None
