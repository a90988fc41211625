"""Code systems, aliasing (rule A.1 / C2) and the value sets consents are validated against.

A coded value is carried as a *token* ``"system|code"`` whose system has been normalised:
``http://hl7.org/fhir/v3/X`` and the v3 OIDs become ``http://terminology.hl7.org/CodeSystem/v3-X``, and
the pre-THO FHIR-native URLs become their ``terminology.hl7.org`` form. Equality is on the token; display
text is ignored; there is no subsumption (C2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

THO: Final = "http://terminology.hl7.org/CodeSystem/"
V3_PREFIX: Final = THO + "v3-"
OLD_V3_PREFIX: Final = "http://hl7.org/fhir/v3/"

ACT_REASON: Final = V3_PREFIX + "ActReason"
ACT_CODE: Final = V3_PREFIX + "ActCode"
CONFIDENTIALITY: Final = V3_PREFIX + "Confidentiality"
PARTICIPATION_TYPE: Final = V3_PREFIX + "ParticipationType"
OBSERVATION_VALUE: Final = V3_PREFIX + "ObservationValue"
CONSENT_SCOPE: Final = THO + "consentscope"
CONSENT_ACTION: Final = THO + "consentaction"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
NHS_NUMBER: Final = "https://fhir.nhs.uk/Id/nhs-number"
ODS_CODE: Final = "https://fhir.nhs.uk/Id/ods-organization-code"

# v3 code systems by OID (HL7 OID registry): ActReason .5.8, ActCode .5.4, Confidentiality .5.25, ...
_V3_OIDS: Final[dict[str, str]] = {
    "2.16.840.1.113883.5.8": "ActReason",
    "2.16.840.1.113883.5.4": "ActCode",
    "2.16.840.1.113883.5.25": "Confidentiality",
    "2.16.840.1.113883.5.90": "ParticipationType",
    "2.16.840.1.113883.5.110": "RoleClass",
    "2.16.840.1.113883.5.111": "RoleCode",
    "2.16.840.1.113883.5.1063": "ObservationValue",
    "2.16.840.1.113883.5.1008": "NullFlavor",
}
_FHIR_NATIVE_MOVED: Final = ("consentscope", "consentaction", "consentcategorycodes", "consentpolicycodes")


def _words(text: str) -> list[str]:
    return text.split()


def normalise_system(system: str) -> str:
    """The canonical URL of a code system (A.1): v3 aliases and OIDs become terminology.hl7.org URLs."""
    s = system.strip()
    if s.startswith(OLD_V3_PREFIX):
        return V3_PREFIX + s[len(OLD_V3_PREFIX):]
    oid = s.removeprefix("urn:oid:")
    if oid in _V3_OIDS:
        return V3_PREFIX + _V3_OIDS[oid]
    for name in _FHIR_NATIVE_MOVED:
        if s == "http://hl7.org/fhir/" + name:
            return THO + name
    return s


def token(system: str | None, code: str | None) -> str:
    """``"system|code"`` with the system normalised; a missing system gives ``"|code"``."""
    return f"{normalise_system(system or '')}|{(code or '').strip()}"


def normalise_token(value: str) -> str:
    """Normalise the system half of a ``"system|code"`` token (a bare value is returned unchanged)."""
    if "|" not in value:
        return value
    system, _, code = value.rpartition("|")
    return token(system, code)


def normalise_tokens(values: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise_token(v) for v in values)


def code_of(value: str) -> str:
    """The code half of a token (``"…v3-ActCode|PSY"`` -> ``"PSY"``)."""
    return value.rpartition("|")[2]


def purpose_token(purpose: str) -> str:
    """A purpose of use given as a bare v3-ActReason code or as a token."""
    return normalise_token(purpose) if "|" in purpose else token(ACT_REASON, purpose)


def action_token(action: str) -> str:
    """A consent action given as a bare consentaction code or as a token."""
    return normalise_token(action) if "|" in action else token(CONSENT_ACTION, action)


NOPAT: Final = token(ACT_CODE, "NOPAT")
AUTHOR_ROLES: Final = frozenset({token(PARTICIPATION_TYPE, "CST"), token(PARTICIPATION_TYPE, "AUT")})

# ---- value sets (validation on write, C2) ---------------------------------------------------------

CONSENT_STATUSES: Final = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
SCOPES: Final = frozenset(token(CONSENT_SCOPE, c) for c in ("adr", "research", "patient-privacy", "treatment"))
PATIENT_PRIVACY: Final = token(CONSENT_SCOPE, "patient-privacy")
RESEARCH: Final = token(CONSENT_SCOPE, "research")
EVALUATED_SCOPES: Final = frozenset({PATIENT_PRIVACY, RESEARCH})
ACTIONS: Final = frozenset(token(CONSENT_ACTION, c) for c in ("collect", "access", "use", "disclose", "correct"))
PROVISION_TYPES: Final = frozenset({"permit", "deny"})
DATA_MEANINGS: Final = frozenset({"instance", "related", "dependents", "authoredby"})

# HL7 v3 PurposeOfUse (the v3-ActReason codes a purpose of use may carry).
PURPOSES: Final = frozenset(token(ACT_REASON, c) for c in _words("""
    HMARKT HOPERAT CAREMGT DONAT FRAUD GOV HACCRED HCOMPL HDECD HDIRECT HDM HLEGAL HOUTCOMS
    HPRGRP HQUALIMP HSYSADMIN LABELING METAMGT MEMADMIN MILCDM PATADMIN PATSFTY PERFMSR RECORDMGT SYSDEV
    HTEST TRAIN HPAYMT CLMATTCH COVAUTH COVERAGE ELIGDTRM ELIGVER ENROLLM MILDCRG REMITADV HRESCH BIORCH
    CLINTRCH CLINTRCHNPC CLINTRCHPC PRECLINTRCH DSRCH POARCH TRANSRCH PATRQT FAMRQT PWATRNY SUPNWK PUBHLTH
    DISASTER THREAT TREAT CLINTRL ETREAT POPHLTH BTG ERTREAT COC"""))

# Security labels: confidentiality, sensitivity (ActInformationSensitivityPolicy), handling caveats
# (ActCode privacy marks and obligations) and integrity/transform codes (ObservationValue).
SECURITY_LABELS: Final = frozenset(
    [token(CONFIDENTIALITY, c) for c in _words("U L M N R V")]
    + [token(ACT_CODE, c) for c in _words("""
        ETH ETHUD OPIOIDUD GDIS HIV MST SCA SDV SEX SPI BH COGN DVD EMOTDIS MH PSY PSYTHPN SUD STD TBOO
        SICKLE DEMO DOB GENDER LIVARG MARST PATLOC RACE REL B EMPL LOCIS SSP ADOL CEL DIA DRGIS EMP PDS PHY
        PRS COMPT ACOCOMPT HRCOMPT RESCOMPT RMGTCOMPT NOPAT NODSCLCD NODSCLCDS NOINTEGRATE NOLIST NOMOU
        NOORGPOL NORDSCLCD NORDSCLCDS NORDSCLW NORELINK NOREUSE NOVIP ORCON DELAU NOAUTH NOCOLLECT
        NOPERSIST NOREDISCLOSE ENCRYPT PERSISTLABEL PRIVMARK UPGRDLABEL DWNGRDLABEL AGGREGATE ANONY AOD
        AUDIT AUDTR CPLYCC CPLYCD CPLYJPP CPLYOPP CPLYOSP CPLYPOL DECLASSIFYLABEL DEID MASK MINEC PSEUD
        REDACT""")]
    + [token(OBSERVATION_VALUE, c) for c in _words("""
        ABSTRED AGGRED ANONYED MAPPED MASKED PSEUDED REDACTED SUBSETTED SYNTAC TRSLT VERSIONED CRYTOHASH
        DIGSIG HRELIABLE RELIABLE UNCERTREL UNRELIABLE LABEL""")]
)

# The R4 (4.0.1) resource types: the codes of http://hl7.org/fhir/resource-types usable as a class.
RESOURCE_TYPE_NAMES: Final = frozenset(_words("""
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent
    Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam
    CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem
    Communication CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent
    Contract Coverage CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device
    DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest
    DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest EnrollmentResponse
    EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
    FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy
    Immunization ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
    Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
    MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
    Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner
    PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup
    ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
    RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
    StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer
    SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification
    SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet
    VerificationResult VisionPrescription"""))


def resource_type_token(resource_type: str) -> str:
    return f"{RESOURCE_TYPES}|{resource_type}"


def normalise_reference(reference: str, base_urls: Iterable[str] = ()) -> str:
    """C1: a literal reference as ``Type/id``: our own absolute base stripped, ``/_history/…`` dropped.

    Absolute references to other servers are returned unchanged (so they match only themselves).
    """
    ref = reference.strip()
    for base in base_urls:
        b = base.rstrip("/") + "/"
        if b != "/" and ref.startswith(b):
            ref = ref[len(b):]
            break
    head, sep, _ = ref.partition("/_history/")
    return head if sep else ref


def nhs_number_valid(value: str) -> bool:
    """10 digits with a modulus-11 check digit (weights 10..2; 11 -> 0; 10 -> invalid)."""
    if len(value) != 10 or not value.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(value[9])
