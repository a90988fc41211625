"""The embedded OAuth 2.0 / SMART authorisation server, built on Authlib's grant and endpoint classes.

- authorization code + PKCE (S256 only, always required) for user-facing apps, with refresh tokens
  (rotated on use; reuse of a rotated one revokes the whole grant);
- client credentials with private_key_jwt client assertions (RS384/ES384, SMART Backend Services), each
  assertion's jti recorded so a replay is refused;
- RFC 7009 revocation and RFC 7662 introspection.

Authlib's core is framework-neutral: `SCOAuth2Request` adapts a plain request (method, public URL, headers,
query and form pairs) and `handle_response` hands back (status, body, headers) for the FastAPI routes to
render. All state lives in the database: each call runs inside one write transaction whose connection is
in the `CURRENT_CONN` context variable (Authlib's hooks do not pass one).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from service.auth.identities import Client, User, get_client, get_user
from service.auth.scopes import ScopeError, ScopeSet
from service.auth.tables import auth_assertion_jti, auth_code, auth_refresh_token, auth_revoked
from service.auth.tokens import InvalidToken, TokenService

log = logging.getLogger("sharedcare.auth")

CURRENT_CONN: ContextVar[Connection] = ContextVar("sharedcare_auth_conn")
ASSERTION_ALGS = ["RS384", "ES384"]
CODE_TTL = 120
MAX_ASSERTION_LIFETIME = 300


def conn() -> Connection:
    return CURRENT_CONN.get()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def insert_ignore(c: Connection, table: Any, values: dict[str, Any]) -> bool:
    """Insert unless the primary key exists; True when inserted (atomic on SQLite and PostgreSQL).

    Told by RETURNING, not rowcount: SQLAlchemy 2.1 with psycopg reports -1 as the rowcount of an INSERT."""
    ins = (pg_insert if c.dialect.name == "postgresql" else sqlite_insert)(table).values(**values)
    return c.execute(ins.on_conflict_do_nothing().returning(*table.primary_key.columns)).first() is not None


# -- the request adapter ------------------------------------------------------------------------------------
@dataclass
class PlainRequest:
    method: str
    url: str  # the public URL (from SHAREDCARE_BASE_URL, never from the Host header)
    headers: dict[str, str]
    query: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] = field(default_factory=list)
    remote: str | None = None


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._list: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            self._list[k].append(v)
        self._data = {k: v[0] for k, v in self._list.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._list


class SCOAuth2Request(OAuth2Request):
    def __init__(self, req: PlainRequest) -> None:
        self.method = req.method
        self.uri = req.url
        self.headers = req.headers
        self._body = None
        self.payload = _Payload(req.query + req.form)
        self._args = {k: v for k, v in req.query}
        self._form = {k: v for k, v in req.form}
        self.client = None
        self.auth_method = None
        self.user = None
        self.authorization_code = None
        self.refresh_token = None
        self.credential = None
        self._scope = None
        self.plain = req

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


# -- what a grant carries ---------------------------------------------------------------------------------
@dataclass
class Login:
    """A user who has just authenticated at the login page, with the launch context they chose."""

    user: User
    patient: str | None
    auth_time: int

    def get_user_id(self) -> str:
        return self.user.username


@dataclass
class UserGrant:
    """The user a token is issued to, with the grant's context (from a code or a refresh token)."""

    user: User
    patient: str | None
    grant_id: str
    nonce: str | None = None
    auth_time: int | None = None

    def get_user_id(self) -> str:
        return self.user.username


@dataclass
class CodeRecord(AuthorizationCodeMixin):
    row: Any

    def get_redirect_uri(self) -> str | None:
        return self.row.redirect_uri or None

    def get_scope(self) -> str:
        return self.row.scope

    @property
    def code_challenge(self) -> str:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.row.code_challenge_method


@dataclass
class RefreshRecord:
    row: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)

    def check_client(self, client: Client) -> bool:
        return secrets.compare_digest(self.row.client_id, client.client_id)

    def get_scope(self) -> str:
        return self.row.scope


@dataclass
class TokenRecord(TokenMixin):
    kind: str  # access | refresh
    token_id: str  # jti, or the refresh token's grant id
    client_id: str
    scope: str
    subject: str
    issued_at: int
    expires_at: int
    revoked: bool
    claims: dict[str, Any] = field(default_factory=dict)

    def check_client(self, client: Client) -> bool:
        return secrets.compare_digest(self.client_id, client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_expired(self) -> bool:
        return self.expires_at <= int(time.time())

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.subject

    def get_client(self) -> Any:
        return get_client(conn(), self.client_id)


# -- grants ---------------------------------------------------------------------------------------------
class S256Challenge(CodeChallenge):
    """PKCE, required for every authorization request, S256 only (SMART App Launch 2.0)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is not accepted)")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE)")
        super().validate_code_verifier(grant, result)


class AuthCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ("none", "private_key_jwt")

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        if not self.request.payload.state:  # SMART App Launch: state is required (CSRF protection for the app)
            raise InvalidRequestError("state is required", redirect_uri=redirect_uri)
        aud = self.request.payload.data.get("aud")
        if aud is None or aud.rstrip("/") != self.server.tokens.audience:
            raise InvalidRequestError(f"aud must be this server's FHIR base URL ({self.server.tokens.audience})",
                                      redirect_uri=redirect_uri, state=self.request.payload.state)
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        login: Login = request.user
        scope = self.server.grantable(login.user, request.scope or "", login.patient)
        data = request.payload.data
        now = int(time.time())
        conn().execute(auth_code.insert().values(
            code_hash=digest(code), client_id=request.client.client_id, username=login.user.username,
            redirect_uri=request.payload.redirect_uri or "", scope=scope.text(), patient=login.patient,
            code_challenge=data["code_challenge"], code_challenge_method=data.get("code_challenge_method", "S256"),
            nonce=(data.get("nonce") or None), auth_time=login.auth_time, expires_at=now + CODE_TTL))

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        # Consumed on first presentation, whatever happens next: a code works once.
        row = conn().execute(auth_code.delete().where(auth_code.c.code_hash == digest(code))
                             .returning(*auth_code.c)).first()
        if row is None or row.expires_at < int(time.time()) or row.client_id != client.client_id:
            return None
        return CodeRecord(row)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        return None  # already consumed by query_authorization_code

    def authenticate_user(self, authorization_code: CodeRecord) -> UserGrant | None:
        row = authorization_code.row
        user = get_user(conn(), row.username)
        if user is None or not user.active:
            return None
        return UserGrant(user, row.patient, secrets.token_urlsafe(18), row.nonce, row.auth_time)


class RefreshGrant(grants.RefreshTokenGrant):
    """Refresh tokens rotate on every use. A token is checked (client, scope, user) before it is claimed, so a
    refused request consumes nothing; presenting an already-rotated token revokes the whole grant (it leaked)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ("none", "private_key_jwt")
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_token(self, client: Client) -> Any:
        raw = self.request.form.get("refresh_token")
        if not raw:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        c, h, now = conn(), digest(raw), int(time.time())
        row = c.execute(select(auth_refresh_token).where(auth_refresh_token.c.token_hash == h)).first()
        if row is None:
            raise InvalidGrantError("The refresh token is not known")
        if row.status == "rotated":
            log.warning("refresh token reuse for grant %s: revoking the grant", row.grant_id)
            revoke_grant(c, row.grant_id, self.server.settings, self.server.tokens)
            raise InvalidGrantError("The refresh token was already used; the grant is revoked")
        if row.status != "active" or row.expires_at <= now:
            raise InvalidGrantError("The refresh token has expired or been revoked")
        if not secrets.compare_digest(row.client_id, client.client_id):
            raise InvalidGrantError("The refresh token was issued to another client")
        return RefreshRecord(row)

    def _validate_token_scope(self, token: Any) -> None:
        """A refresh may ask for less than was granted (parsed: `patient/Observation.r` is within
        `patient/Observation.rs`), never for more."""
        scope = self.request.payload.scope
        if not scope:
            return
        try:
            requested = ScopeSet.parse(scope)
        except ScopeError as exc:
            raise InvalidScopeError(description=str(exc).replace('"', "'")) from None
        within = ScopeSet.parse(token.get_scope()).grant(requested)
        if set(within.resource) != set(requested.resource) or within.other != requested.other:
            raise InvalidScopeError(description="A refresh may not ask for more than the original grant")

    def validate_token_request(self) -> None:
        super().validate_token_request()  # client, token, scope (a refresh may narrow, never widen)
        record: RefreshRecord = self.request.refresh_token
        user = get_user(conn(), record.username)
        if user is None or not user.active:
            raise InvalidGrantError("The user of this grant is no longer active")
        T = auth_refresh_token
        claimed = conn().execute(update(T).where(T.c.token_hash == record.token_hash, T.c.status == "active")
                                 .values(status="rotated")).rowcount
        if claimed != 1:  # used by a concurrent request a moment ago: treat as reuse
            log.warning("refresh token reuse for grant %s: revoking the grant", record.grant_id)
            revoke_grant(conn(), record.grant_id, self.server.settings, self.server.tokens)
            raise InvalidGrantError("The refresh token was already used; the grant is revoked")

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        raise NotImplementedError  # done by _validate_request_token

    def authenticate_user(self, refresh_token: Any) -> UserGrant | None:
        user = get_user(conn(), refresh_token.username)
        if user is None or not user.active:
            return None
        return UserGrant(user, refresh_token.patient, refresh_token.grant_id)

    def revoke_old_credential(self, refresh_token: Any) -> None:
        return None  # rotated atomically in validate_token_request


class BackendGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ("private_key_jwt",)


class PrivateKeyJWTAuth(JWTBearerClientAssertion):
    """private_key_jwt client authentication (RFC 7523, SMART Backend Services)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: SharedCareAuthServer) -> None:
        super().__init__(validate_jti=True, leeway=server.settings.clock_skew)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [self.server.token_url]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if client.jwks:
            return KeySet.import_key_set(client.jwks)
        raise InvalidClientError(description="The client has no registered public keys")

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGS)
        except JoseError as exc:
            log.info("client assertion refused: %r", exc)
            raise InvalidClientError(
                description=f"The client assertion's signature does not verify with the registered keys "
                            f"(allowed algorithms: {', '.join(ASSERTION_ALGS)})") from None
        claims = token.claims
        self.verify_claims(claims)
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp - time.time() > MAX_ASSERTION_LIFETIME + self.leeway:
            raise InvalidClientError(description="The client assertion's exp is more than 5 minutes ahead")
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            return False
        expires = int(claims.get("exp", time.time())) + self.leeway
        return insert_ignore(conn(), auth_assertion_jti, {"client_id": claims["sub"], "jti": jti,
                                                          "expires_at": expires})


# -- revocation and introspection ------------------------------------------------------------------------
def revoke_grant(c: Connection, grant_id: str, settings: Any, tokens: Any = None) -> None:
    c.execute(update(auth_refresh_token).where(auth_refresh_token.c.grant_id == grant_id)
              .values(status="revoked"))
    if tokens is not None:
        tokens.revocations.note(grant_id)
    insert_ignore(c, auth_revoked, {"token_id": grant_id,
                                    "expires_at": int(time.time()) + settings.access_token_ttl + settings.clock_skew})


class _TokenLookup:
    server: SharedCareAuthServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        c = conn()
        if token_type_hint != "access_token":
            row = c.execute(select(auth_refresh_token)
                            .where(auth_refresh_token.c.token_hash == digest(token_string))).first()
            if row is not None:
                return TokenRecord("refresh", row.grant_id, row.client_id, row.scope, row.username, row.issued_at,
                                   row.expires_at, row.status != "active",
                                   {"patient": row.patient} if row.patient else {})
        if token_string.count(".") == 2:
            try:
                v = self.server.tokens.verify(token_string, allow_expired=True)
            except InvalidToken:
                return None
            if v.external:
                return None
            cl = v.claims
            return TokenRecord("access", cl["jti"], str(cl.get("client_id", "")), str(cl.get("scope", "")),
                               str(cl["sub"]), int(cl.get("iat", 0)), int(cl.get("exp", 0)),
                               TokenService.is_revoked(c, cl), cl)
        return None


class Revocation(_TokenLookup, RevocationEndpoint):
    CLIENT_AUTH_METHODS = ("none", "private_key_jwt")

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        s = self.server.settings
        if token.kind == "refresh":
            revoke_grant(conn(), token.token_id, s, self.server.tokens)
        else:
            self.server.tokens.revocations.note(token.token_id)
            insert_ignore(conn(), auth_revoked, {"token_id": token.token_id,
                                                 "expires_at": token.expires_at + s.clock_skew})


class Introspection(_TokenLookup, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ("none", "private_key_jwt")

    def check_permission(self, token: TokenRecord, client: Client, request: Any) -> bool:
        return client.can_introspect or token.check_client(client)

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"active": True, "scope": token.scope, "client_id": token.client_id,
                               "sub": token.subject, "iat": token.issued_at, "exp": token.expires_at,
                               "iss": self.server.tokens.issuer,
                               "token_type": "Bearer" if token.kind == "access" else "refresh_token"}
        if token.kind == "access":
            out["aud"] = self.server.tokens.audience
            for k in ("patient", "fhirUser", "organization", "ods_code", "role_code", "kind"):
                if k in token.claims:
                    out[k] = token.claims[k]
        elif "patient" in token.claims:
            out["patient"] = token.claims["patient"]
        return out


# -- the server -----------------------------------------------------------------------------------------
class SharedCareAuthServer(AuthorizationServer):
    def __init__(self, settings: Any, tokens: TokenService) -> None:
        super().__init__()
        self.settings = settings
        self.tokens = tokens
        self.token_url = f"{settings.base_url}/auth/token"
        self.register_token_generator("default", self._generate)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWTAuth(self))
        self.register_grant(AuthCodeGrant, [S256Challenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_grant(BackendGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)

    # Authlib hooks
    def query_client(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        return get_client(conn(), client_id)

    def create_oauth2_request(self, request: Any) -> SCOAuth2Request:
        return request if isinstance(request, SCOAuth2Request) else SCOAuth2Request(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def validate_requested_scope(self, scope: str | None) -> None:
        try:
            ScopeSet.parse(scope)
        except ScopeError as exc:
            raise InvalidScopeError(description=str(exc).replace('"', "'")) from None

    def grantable(self, user: User, requested: str, patient: str | None) -> ScopeSet:
        """The scopes a user gets: what was asked and the client may have, within the user's ceiling; patient/
        scopes only with a patient in context."""
        granted = user.ceiling.grant(ScopeSet.parse(requested))
        if not patient:
            granted = ScopeSet(tuple(s for s in granted.resource if s.context != "patient"),
                               granted.other - {"launch/patient"})
        return granted

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        refresh = token.get("refresh_token")
        if not refresh or not isinstance(request.user, UserGrant):
            return
        ug: UserGrant = request.user
        # A narrowed refresh narrows its access token only: the new refresh token keeps the grant's scope.
        previous = getattr(request, "refresh_token", None)
        scope_text = previous.get_scope() if isinstance(previous, RefreshRecord) else token.get("scope", "")
        scopes = ScopeSet.parse(scope_text)
        ttl = self.settings.refresh_token_ttl if scopes.has("offline_access") else min(
            self.settings.refresh_token_ttl, 12 * 3600)
        now = int(time.time())
        conn().execute(auth_refresh_token.insert().values(
            token_hash=digest(refresh), grant_id=ug.grant_id, client_id=request.client.client_id,
            username=ug.user.username, scope=scope_text, patient=ug.patient, status="active",
            issued_at=now, expires_at=now + ttl))

    def _generate(self, grant_type: str, client: Client, user: Any = None, scope: str | None = None,
                  expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        ttl = self.settings.access_token_ttl
        if grant_type == "client_credentials":
            requested = ScopeSet.parse(scope) if scope else client.ceiling
            granted = client.ceiling.grant(ScopeSet(requested.resource, frozenset()))
            if not granted.resource:
                raise InvalidScopeError(description="None of the requested scopes may be granted to this client "
                                                    f"(it may have: {client.scope})")
            access, _claims = self.tokens.access_token(scope=granted, client_id=client.client_id, client=client)
            return {"access_token": access, "token_type": "Bearer", "expires_in": ttl, "scope": granted.text()}
        ug: UserGrant = user
        granted = ScopeSet.parse(scope)
        access, _claims = self.tokens.access_token(scope=granted, client_id=client.client_id, user=ug.user,
                                                   patient=ug.patient, grant_id=ug.grant_id)
        out: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": ttl,
                               "scope": granted.text()}
        if ug.patient:
            out["patient"] = ug.patient
            out["need_patient_banner"] = ug.user.kind not in ("patient",)
        if granted.has("openid"):
            out["id_token"] = self.tokens.id_token(ug.user, client.client_id, nonce=ug.nonce,
                                                   auth_time=ug.auth_time, fhir_user=granted.has("fhirUser"))
        # A refresh always hands over the replacement of the token it consumed (even when it narrowed the scope).
        if include_refresh_token and (grant_type == "refresh_token" or granted.has("offline_access")
                                      or granted.has("online_access")):
            out["refresh_token"] = secrets.token_urlsafe(32)
        return out
