"""The resource server side: every /fhir request needs a valid bearer token, which becomes the
RequestContext (who, kind, role, organisation, patient in context, scopes, purpose of use).

Public without a token: `GET /fhir/metadata` (SMART and FHIR require it) and the SMART discovery document
(served by its own route). Failures are 401 with `WWW-Authenticate: Bearer realm=..., error="invalid_token",
error_description=...` (RFC 6750); an insufficient scope is the guard's 403.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.exc import DBAPIError

from service.access.context import RequestContext
from service.auth.throttle import ApiThrottle
from service.auth.tokens import InvalidToken, TokenService
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest

log = logging.getLogger("sharedcare.auth")
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
    """Bearer token -> RequestContext. A verified token (signature, issuer, audience, times) is kept until it
    expires (`VerifiedTokens`), so a caller's next requests skip the signature check; revocation is looked up in
    the process-wide cache (`TokenService.revocations`: honoured by every process within
    `SHAREDCARE_REVOCATION_CHECK_SECONDS`, default 5, and at once by the one that revoked it)."""

    def __init__(self, tokens: TokenService, realm: str, throttle: ApiThrottle | None = None) -> None:
        self.tokens = tokens
        self.realm = realm
        self.verified = VerifiedTokens()
        self.throttle = throttle or ApiThrottle(0)

    def unauthorized(self, description: str, error: str | None = "invalid_token") -> OperationOutcomeError:
        return OperationOutcomeError(401, "login", description,
                                     headers={"WWW-Authenticate": _challenge(self.realm, error, description)})

    def __call__(self, req: FhirRequest, services: Any) -> RequestContext:
        purposes, reason = purpose_of_use(req)
        remote = req.header("x-sharedcare-remote")
        agent = req.header("user-agent")
        if (req.method, req.path.strip("/")) in PUBLIC:
            return RequestContext(None, purposes, reason, remote_addr=remote, user_agent=agent,
                                  request_id=req.request_id)
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
            found = self.verified.get(token)
            if found is not None and found[2] not in self.tokens.keys.valid_kids():
                self.verified.drop(token)  # its signing key has since been retired for good
                found = None
            if found is None:
                verified = self.tokens.verify(token)
                found = (verified, self.tokens.principal(verified), _kid(token))
                if not verified.external:  # (an outside issuer's tokens are checked against its keys each time)
                    self.verified.put(token, found)
            verified, principal, _ = found
            if not verified.external and _revoked(self.tokens, services.db, verified.claims):
                self.verified.drop(token)
                raise InvalidToken("The access token has been revoked")
        except InvalidToken as exc:
            raise self.unauthorized(str(exc)) from None
        except DBAPIError as exc:  # the revocation list could not be read: refuse for now, never let it through
            raise _database_error(exc) from None
        try:
            self.throttle.check(principal.subject, services.db)  # (429 with Retry-After past the caller's limit)
        except DBAPIError as exc:
            raise _database_error(exc) from None
        return RequestContext(principal, purposes, reason, remote_addr=remote, user_agent=agent,
                              request_id=req.request_id)


def _revoked(tokens: TokenService, db: Any, claims: dict[str, Any]) -> bool:
    """Whether the token is revoked; a pooled connection found dead is retried once on a fresh one, as reads are
    (service/api/pipeline.py), so the first request after a database restart is not refused for it."""
    try:
        return tokens.revocations.is_revoked(db, claims)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("a pooled database connection was dead; checking revocations again on a fresh one")
        return tokens.revocations.is_revoked(db, claims)


def _database_error(exc: DBAPIError) -> OperationOutcomeError:
    """A database that is down, read-only or full while checking the token (revocations, the rate limit): 503 with
    Retry-After, like any request that needs it; anything else is a 500 (logged)."""
    from service.audit.log import unavailable

    log.warning("database error while authenticating: %s", type(exc).__name__)
    if unavailable(exc):
        return OperationOutcomeError(503, "transient", "The database is unavailable; try again shortly",
                                     headers={"Retry-After": "5"})
    log.error("database error while authenticating", exc_info=exc)
    return OperationOutcomeError(500, "exception", "Internal error (database); it has been logged")


def _kid(token: str) -> str | None:
    import base64
    import json

    try:
        head = token.split(".", 1)[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid")
    except (ValueError, UnicodeError):
        return None


class VerifiedTokens:
    """Tokens whose signature and claims were verified, with the caller they give, until they expire."""

    MAX = 10_000

    def __init__(self) -> None:
        import threading
        from collections import OrderedDict

        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> Any:
        import time

        with self._lock:
            item = self._items.get(token)
            if item is None:
                return None
            if item[0] <= time.time():
                del self._items[token]
                return None
            self._items.move_to_end(token)
            return item[1]

    def put(self, token: str, value: tuple[Any, Any, Any]) -> None:
        exp = value[0].claims.get("exp")
        if not isinstance(exp, int):
            return
        with self._lock:
            self._items[token] = (exp, value)
            while len(self._items) > self.MAX:
                self._items.popitem(last=False)

    def drop(self, token: str) -> None:
        with self._lock:
            self._items.pop(token, None)
