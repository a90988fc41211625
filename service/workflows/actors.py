"""Who is acting, as FHIR references: the caller of the current request."""

from __future__ import annotations

from typing import Any

from service.access.context import Principal
from service.clock import fhir_instant, now_us
from service.repository import Repository
from service.workflows import professions
from service.workflows.codes import CLIENT_ID, ODS, USER_ID


def principal(repo: Repository) -> Principal | None:
    return repo.ctx.principal


def _in_record(repo: Repository, ref: str) -> bool:
    """Whether the caller's own `Type/id` (their user or organisation) is a current resource (memoised for
    the request; the server's lookup of the caller's own identity)."""
    memo: dict[str, bool] = repo.memo.setdefault("workflow_refs", {})
    if ref not in memo:
        rtype, _, rid = ref.partition("/")
        memo[ref] = repo.server().get(rtype, rid) is not None
    return memo[ref]


def who(repo: Repository) -> dict[str, Any]:
    """The caller as a Reference: their FHIR user (Practitioner/..., Patient/...) when it is in the record,
    else an identifier (USER_ID: the user name; CLIENT_ID: a system client's id)."""
    p = principal(repo)
    if p is not None and p.fhir_user and _in_record(repo, p.fhir_user):
        return {"reference": p.fhir_user}
    if p is not None and p.fhir_user:
        return {"identifier": {"system": USER_ID, "value": p.subject}, "display": p.fhir_user}
    name = (p.client_id or p.subject) if p is not None else "unknown"
    return {"identifier": {"system": CLIENT_ID, "value": name}, "display": name}


def organisation(repo: Repository) -> dict[str, Any] | None:
    p = principal(repo)
    if p is None or not p.organisation:
        return None
    if _in_record(repo, p.organisation):
        return {"reference": p.organisation}
    if p.ods_code:
        return {"identifier": {"system": ODS, "value": p.ods_code}, "display": p.organisation}
    return {"display": p.organisation}


def profession(repo: Repository) -> str | None:
    return professions.of_principal(principal(repo))


def user_reference(repo: Repository) -> str | None:
    """The caller's FHIR user reference ("Practitioner/x"), or None for system callers (not checked
    against the record: used to match care team members and authors)."""
    p = principal(repo)
    return p.fhir_user if p is not None else None


def now() -> str:
    return fhir_instant(now_us())
