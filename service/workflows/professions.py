"""Which profession a professional belongs to, for the joint assessment's sections and the figures.

The assessment's sections say which profession normally completes them (section-profession extension:
health | social-care | any). A user's profession comes from their SDS job role code
(https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName, the token's `role_code`), else from their
service roles. This module is the one place that maps them; unknown codes give None (no profession:
such a user still contributes, but counts for neither health nor social care in the figures).
"""

from __future__ import annotations

from service.access.context import Principal

HEALTH = "health"
SOCIAL_CARE = "social-care"

# SDS job role code -> profession. Clinical roles are health; social work is social care.
JOB_ROLE_PROFESSION: dict[str, str] = {
    "R8000": HEALTH,  # Clinical Practitioner Access Role
    "R8001": HEALTH,  # Nurse
    "R8002": HEALTH,  # Nurse Manager
    "R8003": HEALTH,  # Health Professional
    "R8004": HEALTH,  # Healthcare Student
    "R0260": HEALTH,  # General Medical Practitioner
    "R0270": HEALTH,  # Salaried General Practitioner
    "R8014": SOCIAL_CARE,  # Social Worker
}

# Service roles (Principal.roles) -> profession, used when the job role code is not in the map.
ROLE_PROFESSION: dict[str, str] = {"clinician": HEALTH, "social-care": SOCIAL_CARE}


def of_job_role(code: str | None) -> str | None:
    return JOB_ROLE_PROFESSION.get(code or "")


def of_principal(principal: Principal | None) -> str | None:
    """"health" | "social-care" | None."""
    if principal is None:
        return None
    found = of_job_role(principal.role_code)
    if found:
        return found
    for role in sorted(principal.roles):
        if role in ROLE_PROFESSION:
            return ROLE_PROFESSION[role]
    return None
