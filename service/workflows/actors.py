"""Who is acting, as FHIR references: the caller of the current request."""

from __future__ import annotations

from typing import Any

from service.access.context import Principal
from service.interactions.session import Session
from service.storage.clock import fhir_instant, now_us
from service.workflows import professions
from service.workflows.codes import CLIENT_ID


def principal(session: Session) -> Principal | None:
    return session.ctx.principal


def who(session: Session) -> dict[str, Any]:
    """The caller as a Reference: their FHIR user (Practitioner/..., Patient/...) or their client id."""
    p = principal(session)
    if p is not None and p.fhir_user:
        return {"reference": p.fhir_user}
    name = (p.client_id or p.subject) if p is not None else "unknown"
    return {"identifier": {"system": CLIENT_ID, "value": name}, "display": name}


def organisation(session: Session) -> dict[str, Any] | None:
    p = principal(session)
    return {"reference": p.organisation} if p is not None and p.organisation else None


def profession(session: Session) -> str | None:
    return professions.of_principal(principal(session))


def user_reference(session: Session) -> str | None:
    """The caller's FHIR user reference ("Practitioner/x"), or None for system callers."""
    p = principal(session)
    return p.fhir_user if p is not None else None


def now() -> str:
    return fhir_instant(now_us())
