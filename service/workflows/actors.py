"""Who is acting, as FHIR references: the caller of the current request."""

from __future__ import annotations

from typing import Any

from service.access.context import Principal
from service.interactions.session import Session
from service.storage.clock import fhir_instant, now_us
from service.workflows import professions
from service.workflows.codes import CLIENT_ID, ODS, USER_ID


def principal(session: Session) -> Principal | None:
    return session.ctx.principal


def _in_record(session: Session, ref: str) -> bool:
    """Whether `Type/id` is a current resource (memoised for the request)."""
    memo: dict[str, bool] = session.__dict__.setdefault("_workflow_refs", {})
    if ref not in memo:
        rtype, _, rid = ref.partition("/")
        cur = session.store.current(session.conn, rtype, rid)
        memo[ref] = cur is not None and not cur.deleted
    return memo[ref]


def who(session: Session) -> dict[str, Any]:
    """The caller as a Reference: their FHIR user (Practitioner/..., Patient/...) when it is in the record,
    else an identifier (USER_ID: the user name; CLIENT_ID: a system client's id)."""
    p = principal(session)
    if p is not None and p.fhir_user and _in_record(session, p.fhir_user):
        return {"reference": p.fhir_user}
    if p is not None and p.fhir_user:
        return {"identifier": {"system": USER_ID, "value": p.subject}, "display": p.fhir_user}
    name = (p.client_id or p.subject) if p is not None else "unknown"
    return {"identifier": {"system": CLIENT_ID, "value": name}, "display": name}


def organisation(session: Session) -> dict[str, Any] | None:
    p = principal(session)
    if p is None or not p.organisation:
        return None
    if _in_record(session, p.organisation):
        return {"reference": p.organisation}
    if p.ods_code:
        return {"identifier": {"system": ODS, "value": p.ods_code}, "display": p.organisation}
    return {"display": p.organisation}


def profession(session: Session) -> str | None:
    return professions.of_principal(principal(session))


def user_reference(session: Session) -> str | None:
    """The caller's FHIR user reference ("Practitioner/x"), or None for system callers (not checked
    against the record: used to match care team members and authors)."""
    p = principal(session)
    return p.fhir_user if p is not None else None


def now() -> str:
    return fhir_instant(now_us())
