"""The resource server side: every /fhir request needs a valid bearer token, which becomes the
RequestContext (who, kind, role, organisation, patient in context, scopes, purpose of use).

Public without a token: `GET /fhir/metadata` (SMART and FHIR require it) and the SMART discovery document
(served by its own route). Failures are 401 with `WWW-Authenticate: Bearer realm=..., error="invalid_token",
error_description=...` (RFC 6750); an insufficient scope is the guard's 403.
"""

from __future__ import annotations

import re
from typing import Any

from service.access.context import RequestContext
from service.auth.tokens import InvalidToken, TokenService
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest

PUBLIC = {("GET", "metadata"), ("GET", ".well-known/smart-configuration")}
PURPOSE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_REASON = 1000


def _challenge(realm: str, error: str | None = None, description: str | None = None) -> str:
    out = f'Bearer realm="{realm}"'
    if error:
        out += f', error="{error}"'
    if description:
        out += ', error_description="' + description.replace('"', "'").replace("\\", "/") + '"'
    return out


def purpose_of_use(req: FhirRequest) -> tuple[tuple[str, ...], str | None]:
    """`X-Purpose-Of-Use: BTG` (codes, comma-separated, optionally `system|code`) and `X-Break-Glass-Reason`."""
    raw = req.header("x-purpose-of-use")
    codes: list[str] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        code = part.rsplit("|", 1)[-1]
        if not PURPOSE.match(code):
            raise OperationOutcomeError(400, "value", f"X-Purpose-Of-Use {part!r} is not a purpose-of-use code "
                                        "such as TREAT, ETREAT or BTG (v3-ActReason)")
        codes.append(code.upper())
    reason = req.header("x-break-glass-reason")
    if reason is not None:
        reason = reason.strip()[:MAX_REASON] or None
    return (tuple(dict.fromkeys(codes)) or ("TREAT",)), reason


class Authenticator:
    def __init__(self, tokens: TokenService, realm: str) -> None:
        self.tokens = tokens
        self.realm = realm

    def unauthorized(self, description: str, error: str | None = "invalid_token") -> OperationOutcomeError:
        return OperationOutcomeError(401, "login", description,
                                     headers={"WWW-Authenticate": _challenge(self.realm, error, description)})

    def check_in_unit(self, conn: Any, ctx: RequestContext) -> None:
        """The revocation check of a context authenticated with `defer=True`, on the request's own unit of
        work (one transaction fewer per request)."""
        if ctx.revocation is not None and TokenService.is_revoked(conn, ctx.revocation):
            raise self.unauthorized("The access token has been revoked")

    def __call__(self, req: FhirRequest, services: Any, defer: bool = False) -> RequestContext:
        purposes, reason = purpose_of_use(req)
        remote = req.header("x-sharedcare-remote")
        agent = req.header("user-agent")
        if (req.method, req.path.strip("/")) in PUBLIC:
            return RequestContext(None, purposes, reason, remote_addr=remote, user_agent=agent)
        header = req.header("authorization")
        if not header:
            raise OperationOutcomeError(401, "login", "This request needs a bearer token (Authorization: Bearer ...); "
                                        f"see {services.settings.fhir_base}/.well-known/smart-configuration",
                                        headers={"WWW-Authenticate": _challenge(self.realm)})
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self.unauthorized("The Authorization header must be 'Bearer <access token>'", "invalid_request")
        try:
            verified = self.tokens.verify(token)
            if not verified.external and not defer:
                with services.db.read() as conn:
                    if TokenService.is_revoked(conn, verified.claims):
                        raise InvalidToken("The access token has been revoked")
            principal = self.tokens.principal(verified)
        except InvalidToken as exc:
            raise self.unauthorized(str(exc)) from None
        pending = verified.claims if defer and not verified.external else None  # checked by check_in_unit
        return RequestContext(principal, purposes, reason, remote_addr=remote, user_agent=agent, revocation=pending)
