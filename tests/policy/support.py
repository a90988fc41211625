"""Builders for the policy tests: consents, labelled clinical records, break-glass headers."""

from __future__ import annotations

from typing import Any

AUTHORED_BY = "https://sharedcare.example.org/fhir/StructureDefinition/authoring-organisation"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PAT_NHS = "9434765919"
PAULA_NHS = "9449306753"
BTG = {"X-Purpose-Of-Use": "BTG", "X-Break-Glass-Reason": "Collapsed in A&E, unconscious; need medications"}


def by(org: str) -> list[dict[str, Any]]:
    return [{"url": AUTHORED_BY, "valueReference": {"reference": f"Organization/{org}"}}]


def observation(patient: str, text: str, *, org: str = "org-gp-practice", labels: tuple[tuple[str, str], ...] = (),
                code: tuple[str, str] = ("http://loinc.org", "8867-4")) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": code[0], "code": code[1]}], "text": text},
                           "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": "2026-10-01",
                           "valueString": text, "extension": by(org)}
    if labels:
        res["meta"] = {"security": [{"system": s, "code": c} for s, c in labels]}
    return res


def consent(patient: str, provision: dict[str, Any], *, rule: str = "OPTOUT", when: str = "2026-11-01T09:00:00Z",
            scope: str = "patient-privacy", **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"}, "dateTime": when,
        "policyRule": {"coding": [{"system": ACT_CODE, "code": rule}]}, "provision": provision}
    res.update(extra)
    return res


def actor(ref: str, role: str = "PRCP") -> dict[str, Any]:
    return {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": role}]}, "reference": {"reference": ref}}


def ids(bundle: dict[str, Any], rtype: str | None = None) -> list[str]:
    return sorted(e["resource"]["id"] for e in bundle.get("entry", [])
                  if e.get("search", {}).get("mode") != "outcome" and (rtype is None or e["resource"]["resourceType"] == rtype))


def outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "outcome"
            for i in e["resource"]["issue"]]
