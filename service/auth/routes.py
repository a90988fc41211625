"""HTTP endpoints of the embedded authorisation server and the discovery documents.

/auth/authorize (GET: the login page; POST: sign in, issue a code), /auth/token, /auth/revoke,
/auth/introspect, /auth/jwks, /.well-known/smart-configuration (also under /fhir), and
/.well-known/openid-configuration. No sessions or cookies: the login form carries the authorization
request itself, and every counter and code lives in the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from authlib.oauth2 import OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from service.auth import ratelimit, scope_words, signin_audit
from service.auth.housekeeping import Purger
from service.auth.identities import check_password
from service.auth.oauth import CURRENT_CONN, Login, PlainRequest, SCOAuth2Request, SharedCareAuthServer
from service.auth.scopes import ScopeError, ScopeSet
from service.fhir.outcome import OperationOutcomeError

MAX_FORM_BYTES = 64 * 1024
LOGIN_FIELDS = {"username", "password", "patient", "action"}
CAPABILITIES = ["launch-standalone", "client-public", "client-confidential-asymmetric", "context-standalone-patient",
                "sso-openid-connect", "permission-v2", "permission-v1", "permission-patient", "permission-user",
                "permission-offline", "permission-online"]
SCOPES_SUPPORTED = ["openid", "fhirUser", "launch/patient", "offline_access", "online_access", "patient/*.cruds",
                    "user/*.cruds", "system/*.cruds", "patient/*.rs", "user/*.rs", "system/*.rs", "patient/*.read",
                    "user/*.read", "system/*.read"]
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff"}

_templates = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                         autoescape=select_autoescape(["html"]))


def discovery(settings: Any) -> dict[str, Any]:
    base = settings.base_url
    return {
        "issuer": base,
        "jwks_uri": f"{base}/auth/jwks",
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "revocation_endpoint": f"{base}/auth/revoke",
        "introspection_endpoint": f"{base}/auth/introspect",
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": CAPABILITIES,
    }


def openid_configuration(settings: Any) -> dict[str, Any]:
    base = settings.base_url
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "jwks_uri": f"{base}/auth/jwks",
        "revocation_endpoint": f"{base}/auth/revoke",
        "introspection_endpoint": f"{base}/auth/introspect",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "name"],
    }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store", **(headers or {})})


def _oauth_response(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    hdrs = {k: v for k, v in headers}
    if isinstance(body, dict):
        hdrs.pop("Content-Type", None)
        return _json(status, body, hdrs)
    return Response(content=body or b"", status_code=status, headers=hdrs)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _form(request: Request) -> list[tuple[str, str]]:
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise OperationOutcomeError(415, "not-supported", "Send application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OperationOutcomeError(413, "too-costly", "The form is too large")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OperationOutcomeError(400, "invalid", "The form is not valid UTF-8 url-encoded data") from None


class AuthRoutes:
    def __init__(self, services: Any, server: SharedCareAuthServer) -> None:
        self.services = services
        self.settings = services.settings
        self.server = server
        self.purger = Purger()

    def in_tx(self, fn: Callable[[], Any]) -> Any:
        with self.services.db.write() as conn:
            token = CURRENT_CONN.set(conn)
            try:
                return fn()
            finally:
                CURRENT_CONN.reset(token)

    def plain(self, request: Request, form: list[tuple[str, str]] | None = None) -> PlainRequest:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        url = self.settings.base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return PlainRequest(request.method, url, dict(request.headers), query, form or [], _client_ip(request))

    # -- pages ----------------------------------------------------------------------------------------------
    def page(self, status: int, *, params: list[tuple[str, str]], client: Any, scope: str, error: str | None = None,
             username: str = "", patient: str = "") -> Response:
        try:
            scopes = ScopeSet.parse(scope)
            listed = [s.text() for s in scopes.resource] + sorted(scopes.other)
        except ScopeError:
            listed = scope.split()
        html = _templates.get_template("login.html").render(
            client_name=client.name if client else "An app", scopes=listed, error=error, params=params,
            action=f"{self.settings.base_url}/auth/authorize", username=username, patient=patient,
            ask_patient="launch/patient" in scope.split(), permissions=scope_words.describe(scope))
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def error_page(self, status: int, message: str) -> Response:
        html = _templates.get_template("error.html").render(message=message)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def oauth_error(self, oreq: SCOAuth2Request, err: OAuth2Error) -> Response:
        if getattr(err, "redirect_uri", None):
            return _oauth_response(self.server.handle_error_response(oreq, err))
        return self.error_page(400, err.description or err.error or "The authorization request is not valid")

    # -- endpoints --------------------------------------------------------------------------------------------
    def authorize_get(self, plain: PlainRequest) -> Response:
        def work() -> Response:
            oreq = SCOAuth2Request(plain)
            try:
                grant = self.server.get_consent_grant(oreq)
            except OAuth2Error as err:
                return self.oauth_error(oreq, err)
            return self.page(200, params=[(k, v) for k, v in plain.query if k not in LOGIN_FIELDS],
                             client=grant.request.client, scope=oreq.payload.scope or "")
        return self.in_tx(work)

    def authorize_post(self, plain: PlainRequest) -> Response:
        s = self.settings
        fields = {k: v for k, v in plain.form if k in LOGIN_FIELDS}
        plain.form = [(k, v) for k, v in plain.form if k not in LOGIN_FIELDS]
        plain.query = []
        username = fields.get("username", "").strip()[:128]
        password = fields.get("password", "")
        fail_key = f"login-fail:user:{username.lower()}"
        oreq = SCOAuth2Request(plain)
        client_id = oreq.payload.client_id
        agent = plain.headers.get("user-agent")

        def start() -> Any:
            try:
                grant = self.server.get_consent_grant(oreq)
            except OAuth2Error as err:
                return self.oauth_error(oreq, err)
            if fields.get("action") == "cancel":
                return _oauth_response(self.server.create_authorization_response(oreq, grant_user=None, grant=grant))
            conn = CURRENT_CONN.get()
            if ratelimit.hit(conn, f"login:ip:{plain.remote}", 60) > s.login_rate_per_minute:
                return self.error_page(429, "Too many sign-in attempts from your network; wait a minute.")
            if ratelimit.peek(conn, fail_key, s.login_lockout_seconds) >= s.login_max_failures:
                wait = ratelimit.retry_after(s.login_lockout_seconds)
                signin_audit.sign_in(self.services, conn, username=username, user=None, client_id=client_id,
                                     remote=plain.remote, agent=agent, detail="account locked after failed sign-ins")
                return self.page(429, params=plain.form, client=grant.request.client, scope=oreq.payload.scope or "",
                                 error=f"Too many failed sign-ins for this account; try again in {wait // 60 + 1} "
                                       "minutes.", username=username)
            return grant

        grant = self.in_tx(start)
        if isinstance(grant, Response):
            return grant
        with self.services.db.read() as conn:  # argon2 takes tens of ms: not inside the write lock
            user = check_password(conn, username, password, demo=s.demo) if username and password else None
        scope = oreq.payload.scope or ""

        def finish() -> Response:
            conn = CURRENT_CONN.get()
            signin_audit.sign_in(self.services, conn, username=username, user=user, client_id=client_id,
                                 remote=plain.remote, agent=agent,
                                 detail=None if user is not None else "wrong user name or password")
            if user is None:
                ratelimit.hit(conn, fail_key, s.login_lockout_seconds)
                return self.page(401, params=plain.form, client=grant.request.client, scope=scope,
                                 error="The user name or password is not right.", username=username)
            ratelimit.clear(conn, fail_key)
            patient, problem = self.launch_patient(conn, user, scope, fields.get("patient", "").strip())
            if problem:
                return self.page(400, params=plain.form, client=grant.request.client, scope=scope, error=problem,
                                 username=username)
            login = Login(user, patient, int(time.time()))
            return _oauth_response(self.server.create_authorization_response(oreq, grant_user=login, grant=grant))

        return self.in_tx(finish)

    def launch_patient(self, conn: Any, user: Any, scope: str, chosen: str) -> tuple[str | None, str | None]:
        """The patient in context: a patient's or carer's own; for staff, the one they chose (launch/patient)."""
        if user.kind in ("patient", "relatedPerson"):
            return user.patient, None
        if "launch/patient" not in scope.split():
            return None, None
        if not chosen:
            return None, "This app needs a patient: enter the id of the Patient record to open."
        from service.access.context import RequestContext
        from service.access.record import RequestRecord
        from service.auth.scopes import ScopeSet
        from service.repository import Repository

        ctx = RequestContext(user.principal(ScopeSet.parse("user/Patient.r")))
        if Repository(self.services, conn, ctx, RequestRecord()).get("Patient", chosen) is None:
            # the same answer for a record that does not exist and one the user may not open
            return None, f"There is no Patient with id {chosen!r} that you may open."
        return chosen, None

    def token(self, plain: PlainRequest) -> Response:
        def work() -> Response:
            conn = CURRENT_CONN.get()
            if ratelimit.hit(conn, f"token:ip:{plain.remote}", 60) > self.settings.token_rate_per_minute:
                return _json(429, {"error": "invalid_request", "error_description": "Too many token requests"},
                             {"Retry-After": str(ratelimit.retry_after(60))})
            self.purger.maybe(conn, self.settings)
            status, body, headers = self.server.create_token_response(plain)
            signin_audit.token_request(self.services, conn, form=dict(plain.form), status=status, body=body,
                                       remote=plain.remote, agent=plain.headers.get("user-agent"))
            return _oauth_response((status, body, headers))
        return self.in_tx(work)

    def endpoint(self, name: str, plain: PlainRequest) -> Response:
        return self.in_tx(lambda: _oauth_response(self.server.create_endpoint_response(name, plain)))


def build_router(services: Any, server: SharedCareAuthServer) -> APIRouter:
    r = AuthRoutes(services, server)
    router = APIRouter(include_in_schema=False)
    settings = services.settings
    keys = server.tokens.keys

    async def guarded(fn: Callable[[], Any]) -> Response:
        try:
            return await fn()
        except OperationOutcomeError as err:
            return _json(err.status, {"error": "invalid_request", "error_description": err.diagnostics})

    @router.get("/auth/authorize")
    async def authorize_get(request: Request) -> Response:
        return await run_in_threadpool(r.authorize_get, r.plain(request))

    @router.post("/auth/authorize")
    async def authorize_post(request: Request) -> Response:
        async def go() -> Response:
            return await run_in_threadpool(r.authorize_post, r.plain(request, await _form(request)))
        return await guarded(go)

    @router.post("/auth/token")
    async def token(request: Request) -> Response:
        async def go() -> Response:
            return await run_in_threadpool(r.token, r.plain(request, await _form(request)))
        return await guarded(go)

    @router.post("/auth/revoke")
    async def revoke(request: Request) -> Response:
        async def go() -> Response:
            return await run_in_threadpool(r.endpoint, "revocation", r.plain(request, await _form(request)))
        return await guarded(go)

    @router.post("/auth/introspect")
    async def introspect(request: Request) -> Response:
        async def go() -> Response:
            return await run_in_threadpool(r.endpoint, "introspection", r.plain(request, await _form(request)))
        return await guarded(go)

    @router.get("/auth/jwks")
    async def jwks() -> Response:
        body = await run_in_threadpool(keys.public_jwks)
        return Response(orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "max-age=300"})

    smart = orjson.dumps(discovery(settings))
    oidc = orjson.dumps(openid_configuration(settings))

    @router.get("/.well-known/smart-configuration")
    @router.get("/fhir/.well-known/smart-configuration")
    async def smart_configuration() -> Response:
        return Response(smart, media_type="application/json")

    @router.get("/.well-known/openid-configuration")
    async def openid_config() -> Response:
        return Response(oidc, media_type="application/json")

    return router
