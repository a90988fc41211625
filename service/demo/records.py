"""The demo FHIR records: four organisations, their professionals, two patients, a carer (whom Pat lets see
her record), a care team.

Fixed ids keep `demo load` idempotent. The GP practice writes the Patient resources; the community
trust writes patient.pat's first care plan; the council writes nothing before the joint assessment.
"""

from __future__ import annotations

from typing import Any

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
JOB_ROLE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"
AUTHORED_BY = "https://sharedcare.example.org/fhir/StructureDefinition/authoring-organisation"

ORGS = {
    # id: (name, ODS code, kind)
    "org-community-trust": ("Riverside Community NHS Trust", "RYX", "prov"),
    "org-council-asc": ("Westshire County Council Adult Social Care", "E10000019", "govt"),
    "org-gp-practice": ("Meadow Lane Surgery", "A81001", "prov"),
    "org-acute-trust": ("Westshire Hospitals NHS Foundation Trust", "RBZ", "prov"),
}

# user name: (Practitioner id, given, family, SDS job role code, role display, organisation id)
PRACTITIONERS = {
    "nurse.nina": ("prac-nina", "Nina", "Nurse", "R8001", "Nurse", "org-community-trust"),
    "social.sam": ("prac-sam", "Sam", "Social", "R8014", "Social Worker", "org-council-asc"),
    "coord.cara": ("prac-cara", "Cara", "Coordinator", "R8008", "Case Manager", "org-community-trust"),
    "gp.gary": ("prac-gary", "Gary", "Practitioner", "R0260", "General Medical Practitioner", "org-gp-practice"),
    "ward.wes": ("prac-wes", "Wes", "Ward", "R8001", "Nurse", "org-acute-trust"),
}

PATIENTS = {
    "patient.pat": ("pat-pat", "Pat", "Example", "9434765919", "1944-03-12", "female"),
    "patient.paula": ("pat-paula", "Paula", "Sample", "9449306753", "1950-07-04", "female"),
}


def authored(resource: dict[str, Any], org_id: str) -> dict[str, Any]:
    resource.setdefault("extension", []).append(
        {"url": AUTHORED_BY, "valueReference": {"reference": f"Organization/{org_id}"}})
    return resource


def records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for oid, (name, ods, kind) in ORGS.items():
        out.append({"resourceType": "Organization", "id": oid, "active": True, "name": name,
                    "identifier": [{"system": ODS, "value": ods}],
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                          "code": kind}]}]})
    for i, (user, (pid, given, family, role, role_name, org)) in enumerate(PRACTITIONERS.items(), 1):
        out.append({"resourceType": "Practitioner", "id": pid, "active": True,
                    "identifier": [{"system": SDS_USER, "value": f"55500{i:07d}"}],
                    "name": [{"given": [given], "family": family}]})
        out.append({"resourceType": "PractitionerRole", "id": f"role-{pid[5:]}", "active": True,
                    "practitioner": {"reference": f"Practitioner/{pid}"},
                    "organization": {"reference": f"Organization/{org}"},
                    "code": [{"coding": [{"system": JOB_ROLE, "code": role, "display": role_name}]}]})
    for pid, given, family, nhs, dob, gender in PATIENTS.values():
        out.append(authored({"resourceType": "Patient", "id": pid, "active": True,
                             "identifier": [{"system": NHS, "value": nhs}],
                             "name": [{"use": "official", "given": [given], "family": family}],
                             "gender": gender, "birthDate": dob,
                             "address": [{"line": ["1 High Street"], "city": "Westshire", "postalCode": "WS1 1AA"}],
                             "generalPractitioner": [{"reference": "Organization/org-gp-practice"}],
                             "managingOrganization": {"reference": "Organization/org-gp-practice"}},
                            "org-gp-practice"))
    out.append(authored({"resourceType": "RelatedPerson", "id": "rp-carl", "active": True,
                         "patient": {"reference": "Patient/pat-pat"},
                         "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                                       "code": "SONC", "display": "son"}]}],
                         "name": [{"given": ["Carl"], "family": "Example"}]}, "org-gp-practice"))
    out.append(authored({"resourceType": "CareTeam", "id": "careteam-pat", "status": "active",
                         "name": "Pat Example's care team",
                         "subject": {"reference": "Patient/pat-pat"},
                         "participant": [
                             {"member": {"reference": "Practitioner/prac-nina"},
                              "onBehalfOf": {"reference": "Organization/org-community-trust"}},
                             {"member": {"reference": "Practitioner/prac-sam"},
                              "onBehalfOf": {"reference": "Organization/org-council-asc"}},
                             {"member": {"reference": "Practitioner/prac-cara"},
                              "onBehalfOf": {"reference": "Organization/org-community-trust"},
                              "role": [{"coding": [{"system": "http://snomed.info/sct", "code": "768820003",
                                                    "display": "Care coordinator"}]}]}],
                         "managingOrganization": [{"reference": "Organization/org-community-trust"}]},
                        "org-community-trust"))
    # Pat lets her son Carl (her carer) see her record (a proxy grant she recorded herself).
    out.append({"resourceType": "Consent", "id": "consent-pat-carl", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                          "display": "Patient Consent"}]}],
                "patient": {"reference": "Patient/pat-pat"}, "dateTime": "2026-09-01T10:00:00+01:00",
                "performer": [{"reference": "Patient/pat-pat"}],
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                           "code": "OPTIN"}]},
                "provision": {"type": "permit", "actor": [{
                    "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                         "code": "IRCP"}]},
                    "reference": {"reference": "RelatedPerson/rp-carl"}}],
                    "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                            "code": "access"}]}]}})
    out.append(authored({"resourceType": "CarePlan", "id": "careplan-pat-1", "status": "active", "intent": "plan",
                         "title": "Staying well at home",
                         "subject": {"reference": "Patient/pat-pat"},
                         "period": {"start": "2026-10-01"},
                         "author": {"reference": "Practitioner/prac-nina"},
                         "description": "Weekly nurse visit for leg ulcer dressing."},
                        "org-community-trust"))
    return out
