"""Code systems and codings used in AuditEvents (IHE BALP, DICOM, HL7 terminology)."""

from __future__ import annotations

from typing import Any

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
NETWORK_TYPE = "http://hl7.org/fhir/network-type"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
SDS_JOB_ROLE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"
# Our own code systems (events with no standard code, service roles, user and client identifiers).
LOCAL = "https://sharedcare.example.org/fhir/CodeSystem"
LOCAL_EVENT = f"{LOCAL}/audit-event"
SERVICE_ROLE = f"{LOCAL}/service-role"
OPERATION = f"{LOCAL}/operation"
USER_ID = "https://sharedcare.example.org/Id/user"
CLIENT_ID = "https://sharedcare.example.org/Id/client"

JOB_ROLES = {"R8000": "Clinical Practitioner Access Role", "R8001": "Nurse", "R8003": "Health Professional Access Role",
             "R8004": "Healthcare Student Access Role", "R8008": "Admin/Clinical Support Access Role",
             "R8014": "Social Worker", "R8015": "Social Care Worker", "R0260": "General Medical Practitioner"}

# Our interaction names -> (restful-interaction code, BALP action).
INTERACTIONS = {
    "read": ("read", "R"), "vread": ("vread", "R"), "update": ("update", "U"), "patch": ("patch", "U"),
    "delete": ("delete", "D"), "history-instance": ("history-instance", "R"), "history-type": ("history-type", "R"),
    "history-system": ("history-system", "R"), "create": ("create", "C"), "search-type": ("search-type", "E"),
    "search-system": ("search-system", "E"), "search-compartment": ("search-type", "E"),
    "capabilities": ("capabilities", "R"), "transaction": ("transaction", "E"), "batch": ("batch", "E"),
    "operation": ("operation", "E"),
}
SEARCHES = {"search-type", "search-system", "search-compartment"}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


TYPE_REST = coding(EVENT_TYPE, "rest", "Restful Operation")
TYPE_LOGIN = coding(DCM, "110114", "User Authentication")
SUBTYPE_LOGIN = coding(DCM, "110122", "Login")
SUBTYPE_LOGOUT = coding(DCM, "110123", "Logout")
SUBTYPE_TOKEN = coding(LOCAL_EVENT, "token-issued", "Access token issued")
TYPE_POLICY = coding(LOCAL_EVENT, "policy-decision", "Access policy decision")
TYPE_BREAK_GLASS = coding(LOCAL_EVENT, "break-glass", "Emergency (break-glass) access")
USER_AGENT = concept(PARTICIPATION, "IRCP", "information recipient")
ORG_AGENT = concept(ROLE_CLASS, "PROV", "healthcare provider")
CLIENT_AGENT = concept(DCM, "110153", "Source Role ID")
SERVER_AGENT = concept(DCM, "110152", "Destination Role ID")
ENTITY_PERSON = coding(ENTITY_TYPE, "1", "Person")
ENTITY_OBJECT = coding(ENTITY_TYPE, "2", "System Object")
ROLE_PATIENT = coding(OBJECT_ROLE, "1", "Patient")
ROLE_RESOURCE = coding(OBJECT_ROLE, "4", "Domain Resource")
ROLE_QUERY = coding(OBJECT_ROLE, "24", "Query")
ENTITY_REQUEST_ID = coding(BALP_ENTITY, "XrequestId", "X-Request-Id")
