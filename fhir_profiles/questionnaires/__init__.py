"""The service's Questionnaires, shipped as package data (JSON files beside this module).

`load_joint_assessment()` returns the one joint health and social care assessment form
(joint-assessment.json, FHIR R4 Questionnaire) as a fresh dict each call, so callers may change it.

Versions: `joint-assessment.json` is the current version (1.1.0); every earlier published version is
kept beside it as `joint-assessment-<version>.json` (1.0.0), because a response is always validated
against the version it pinned (`questionnaire` = `url|version`) and a published version never
changes. A release that changes the form (wording, items, answer lists) gets a new version string.
1.1.0: the Care Act outcomes in the exact words of the Care and Support (Eligibility Criteria)
Regulations 2015, regulation 2(2) (with their letters as `prefix`), and a level of need for each.

Shape of the joint assessment (linkIds are "<section>.<topic>.<question>", e.g.
"care-act.nutrition.need", "health.falls.history"; every linkId starts with its section's linkId):

  section      profession    what
  about-me     any           demographics (pre-fillable), communication, what matters to me
  care-act     social-care   the ten Care Act 2014 eligibility outcomes: care-act.<outcome>.need
                             (achievement per the Eligibility Criteria Regulations 2015),
                             .level (level of need), .significant-impact and .impact (impact on
                             wellbeing), .notes
  health       health        nine health needs: health.<need>.need (need level), need-specific
                             questions, .notes
  risks        any           safeguarding, repeating risk group (risks.risk.*)
  carers       social-care   carers.has-carer, repeating carers.carer.* (carer's assessment offered /
                             wanted, the carer's own needs)
  tec          any           technology-enabled care
  sharing      any           the conversation about sharing information and the person's wishes

Extensions (urls in fhir_profiles.questionnaire_validation):
- SECTION_PROFESSION_URL on each top-level group, valueCode health | social-care | any;
- PREFILL_SOURCE_URL on pre-fillable items, valueString one of PREFILL_SOURCES (Patient.name,
  Patient.birthDate, Patient.gender, Patient.identifier[nhs-number], Patient.address,
  Patient.telecom[phone], Patient.generalPractitioner, Patient.communication.language,
  RelatedPerson (on repeating contact / carer groups), RelatedPerson.name,
  RelatedPerson.relationship, RelatedPerson.telecom[phone]).

Local codes use CodeSystems under https://sharedcare.example.org/fhir/CodeSystem/assessment-*:
assessment-section, assessment-care-act-outcome, assessment-outcome-achievement,
assessment-health-need, assessment-need-level (none/low/moderate/high/severe, the level names of
the NHS Continuing Healthcare Decision Support Tool), assessment-risk-level, assessment-sharing-wish
and assessment-answer (other answer lists). SNOMED CT and LOINC codes are used where they exist.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from fhir_profiles.questionnaire_validation import (
    PREFILL_SOURCE_URL,
    PREFILL_SOURCES,
    SECTION_PROFESSION_URL,
)

__all__ = [
    "JOINT_ASSESSMENT_FILE",
    "JOINT_ASSESSMENT_TITLE",
    "JOINT_ASSESSMENT_URL",
    "PREFILL_SOURCES",
    "PREFILL_SOURCE_URL",
    "SECTION_PROFESSION_URL",
    "load_joint_assessment",
]

JOINT_ASSESSMENT_FILE = "joint-assessment.json"
JOINT_ASSESSMENT_URL = "https://sharedcare.example.org/fhir/Questionnaire/joint-assessment"
JOINT_ASSESSMENT_TITLE = "Joint health and social care assessment"


@cache
def _text(name: str) -> str:
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_joint_assessment() -> dict[str, Any]:
    """The joint assessment Questionnaire as a new dict (the file is read once per process)."""
    return json.loads(_text(JOINT_ASSESSMENT_FILE))
