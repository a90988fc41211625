"""The request context (frozen): who (person or system), role, organisation, patient in context, purpose of use.

What a request touched and decided is not kept here but in its `RequestRecord` (service/access/record.py),
which the audit consumes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `kind`: practitioner | patient | relatedPerson | system | admin | ig."""

    subject: str  # token `sub`: user name or client id
    kind: str
    client_id: str | None = None
    fhir_user: str | None = None  # e.g. "Practitioner/abc"
    organisation: str | None = None  # literal reference, e.g. "Organization/xyz"
    ods_code: str | None = None
    role_code: str | None = None  # SDS job role, e.g. R8001
    roles: frozenset[str] = frozenset()  # service roles: clinician, social-care, coordinator, ig-lead, admin
    patient: str | None = None  # patient id in context (launch/patient or a patient user)
    scopes: Any = None  # parsed SMART scopes (service.auth.scopes.ScopeSet) or None
    token_id: str | None = None
    claims: Any = field(default_factory=dict, hash=False, compare=False)


INTERNAL = "sharedcare-internal"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def org_reference(p: Principal) -> dict[str, Any] | None:
    """The caller's organisation as a Reference (reference and ODS code), or None."""
    if not p.organisation and not p.ods_code:
        return None
    ref: dict[str, Any] = {}
    if p.organisation:
        ref["reference"] = p.organisation
    if p.ods_code:
        ref["identifier"] = {"system": ODS, "value": p.ods_code}
    return ref


def org_keys(p: Principal) -> frozenset[str]:
    """The keys the caller's organisation is known by: its reference and its ODS code token."""
    keys = set()
    if p.organisation:
        keys.add(p.organisation)
    if p.ods_code:
        keys.add(f"{ODS}|{p.ods_code}")
    return frozenset(keys)


@dataclass(frozen=True)
class RequestContext:
    principal: Principal | None
    purpose_of_use: tuple[str, ...] = ("TREAT",)
    break_glass_reason: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    remote_addr: str | None = None
    user_agent: str | None = None

    @classmethod
    def system(cls) -> RequestContext:
        """An internal, fully trusted context (CLI tools such as demo load and reindex)."""
        return cls(Principal(subject=INTERNAL, kind="admin", roles=frozenset({"admin"})))

    @property
    def is_internal(self) -> bool:
        p = self.principal
        return p is not None and p.subject == INTERNAL and p.scopes is None
