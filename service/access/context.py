"""The request context: who (person or system), role, organisation, patient in context, purpose of use."""

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
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass
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
        return cls(Principal(subject="sharedcare-internal", kind="admin", roles=frozenset({"admin"})))
