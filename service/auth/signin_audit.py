"""Audit of sign-ins and token requests (IHE BALP "User Authentication" events through service.audit).

Recorded in the same write transaction as the sign-in or token request itself: a sign-in that cannot be
audited does not happen. Successful and refused sign-ins (wrong password, account locked) and every token
request (issued, or refused with the OAuth error) are recorded; requests refused by the per-address rate
limit are not, so a flood cannot turn into a flood of audit rows.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy.engine import Connection

from service.access.context import Principal, RequestContext
from service.auth.identities import User


def enabled(services: Any) -> bool:
    return getattr(services, "audit", None) is not None


def _ctx(principal: Principal | None, remote: str | None, agent: str | None) -> RequestContext:
    return RequestContext(principal, remote_addr=remote, user_agent=agent)


def user_principal(user: User, client_id: str | None = None) -> Principal:
    return Principal(subject=user.username, kind=user.kind, client_id=client_id, fhir_user=user.fhir_user,
                     organisation=user.organisation, ods_code=user.ods_code, role_code=user.role_code,
                     roles=user.roles, patient=user.patient)


def sign_in(services: Any, conn: Connection, *, username: str, user: User | None, client_id: str | None,
            remote: str | None, agent: str | None, detail: str | None = None) -> None:
    if not enabled(services):
        return
    from service.audit import record_login

    principal = user_principal(user, client_id) if user is not None else None
    record_login(conn, _ctx(principal, remote, agent), user=username or "(none)", success=user is not None,
                 detail=detail)


def _claims(access_token: str) -> dict[str, Any]:
    """The claims of an access token this server has just signed (no need to verify our own signature)."""
    part = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def token_request(services: Any, conn: Connection, *, form: dict[str, str], status: int, body: Any,
                  remote: str | None, agent: str | None) -> None:
    if not enabled(services):
        return
    from service.audit import record_token

    grant = form.get("grant_type", "")
    if status == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
        tokens = services.auth.tokens
        from service.auth.tokens import Verified

        claims = _claims(body["access_token"])
        principal = tokens.principal(Verified(claims, False))
        record_token(conn, _ctx(principal, remote, agent), client_id=str(claims.get("client_id", "")),
                     user=None if principal.kind == "system" else principal.subject, scope=str(body.get("scope", "")),
                     patient=claims.get("patient"), success=True, detail=f"grant_type={grant}")
        return
    error = body.get("error", "error") if isinstance(body, dict) else "error"
    description = body.get("error_description") if isinstance(body, dict) else None
    record_token(conn, _ctx(None, remote, agent), client_id=form.get("client_id") or "(not authenticated)",
                 scope=form.get("scope", ""), success=False,
                 detail=f"grant_type={grant}: {error}" + (f" ({description})" if description else ""))
