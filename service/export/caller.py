"""Who an export runs as: the client that asked, rebuilt from its verified token claims (never the token itself)
with the purposes of use it stated, so the worker's searches get the same scopes, care relationships and policy
as the kick-off request would have."""

from __future__ import annotations

from typing import Any

import orjson

from service.access.context import Principal, RequestContext


def describe(ctx: RequestContext) -> str:
    p = ctx.principal
    assert p is not None
    return orjson.dumps({"claims": dict(p.claims or {}), "purposes": list(ctx.purpose_of_use)}).decode()


def owner(p: Principal) -> tuple[str, str | None]:
    """The key a job's files are served to: the token's subject and client."""
    return p.subject, p.client_id


def context(services: Any, caller: str, request_id: str) -> RequestContext:
    from service.auth.tokens import Verified

    raw = orjson.loads(caller)
    claims = raw["claims"]
    tokens = services.auth.tokens
    principal = tokens.principal(Verified(claims, external=claims.get("iss") not in (None, tokens.issuer)))
    return RequestContext(principal, tuple(raw["purposes"]), None, request_id=request_id)


def revoked(services: Any, caller: str) -> bool:
    """Whether the token that asked has since been revoked (the export then stops)."""
    claims = orjson.loads(caller)["claims"]
    if claims.get("iss") not in (None, services.auth.tokens.issuer):
        return False
    return bool(services.auth.tokens.revocations.is_revoked(services.db, claims))
