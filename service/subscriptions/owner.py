"""Who a subscription runs as: the creator's identity, kept when the Subscription is written and rebuilt into a
RequestContext whenever the subscription is matched or delivered, so a subscriber is only ever notified of what
that caller may see, decided by the same repository and policy as their own requests.

Kept: the creator's verified token claims (less the times), whether they came from an outside issuer, and the
purposes of use of the request (never break-glass: a notification is not an emergency access). Rebuilt with the
same mapping as a request's token (`TokenService.principal`); an identity since deactivated in our own
records (a user or client whose row says inactive) no longer gets anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection

from service.access.context import RequestContext

DROPPED_CLAIMS = ("exp", "iat", "nbf")


def owner_of(ctx: RequestContext | None) -> dict[str, Any]:
    """What to keep of the writer of a Subscription."""
    if ctx is None or ctx.principal is None or ctx.is_internal:
        return {"internal": True}
    p = ctx.principal
    claims = {k: v for k, v in (p.claims or {}).items() if k not in DROPPED_CLAIMS}
    purposes = [c for c in ctx.purpose_of_use if c != "BTG"] or ["TREAT"]
    if not claims.get("sub"):  # a caller not from a token (the service's own pages): its fields as claims
        claims = {"sub": p.subject, "kind": p.kind, "client_id": p.client_id, "fhirUser": p.fhir_user,
                  "organization": p.organisation, "ods_code": p.ods_code, "role_code": p.role_code,
                  "roles": sorted(p.roles), "patient": p.patient,
                  "scope": p.scopes.text() if p.scopes is not None else "", **(p.claims or {})}
        claims = {k: v for k, v in claims.items() if v not in (None, "", [])}
    return {"claims": claims, "purposes": purposes, "subject": p.subject, "system": p.kind == "system"}


def dumps(owner: dict[str, Any]) -> str:
    return orjson.dumps(owner).decode()


def describe(owner_text: str) -> str:
    owner = orjson.loads(owner_text)
    return "the server" if owner.get("internal") else str(owner.get("subject"))


def context_for(services: Any, conn: Connection, owner_text: str) -> RequestContext | None:
    """The owner's RequestContext now, or None when the identity has been deactivated."""
    from service.auth.tables import auth_client, auth_user
    from service.auth.tokens import Verified

    owner = orjson.loads(owner_text)
    if owner.get("internal"):
        return RequestContext.system()
    claims = dict(owner["claims"])
    tokens = services.auth.tokens
    external = bool(claims.get("iss")) and claims.get("iss") != tokens.issuer
    principal = tokens.principal(Verified(claims, external))
    if not external:
        table, key = (auth_client, auth_client.c.client_id) if owner.get("system") else (auth_user,
                                                                                          auth_user.c.username)
        row = conn.execute(select(table.c.active).where(key == principal.subject)).first()
        if row is not None and not row[0]:
            return None
    principal = replace(principal, token_id=None)
    return RequestContext(principal, tuple(owner.get("purposes") or ("TREAT",)))
