"""Access tokens: signed JWTs (RFC 9068 `at+jwt`) issued by the embedded server, and their verification
(embedded tokens, and tokens of an external issuer when one is configured).

Claims of an embedded access token: iss (the service root), sub (user name or client id), aud (the FHIR
base), exp, iat, jti, scope, client_id, kind, roles, fhirUser, patient (when in context), organization
(reference), ods_code, role_code, and `grant` (the refresh-token family, so revoking it also kills the
access tokens it issued).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from service.access.context import Principal
from service.auth.identities import Client, User
from service.auth.keys import ALG, KeyStore
from service.auth.scopes import ScopeError, ScopeSet
from service.auth.tables import auth_revoked
from service.config import Settings

log = logging.getLogger("sharedcare.auth")

ACCESS_TYP = "at+jwt"
FHIR_USER_KINDS = {"Practitioner": "practitioner", "PractitionerRole": "practitioner", "Patient": "patient",
                   "RelatedPerson": "relatedPerson"}
DEFAULT_CLAIMS_MAP = {"subject": "sub", "fhir_user": "fhirUser", "organisation": "organization", "ods_code": "ods_code",
                      "role_code": "role_code", "roles": "roles", "kind": "kind", "patient": "patient",
                      "scope": "scope"}


class InvalidToken(Exception):
    """The bearer token is not acceptable; the text says why (it goes into WWW-Authenticate)."""


@dataclass(frozen=True)
class Verified:
    claims: dict[str, Any]
    external: bool


class TokenService:
    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self.settings = settings
        self.keys = keys
        self.issuer = settings.base_url
        self.audience = settings.fhir_base
        self._external = ExternalKeys(settings) if settings.external_issuer else None
        self.revocations = RevocationCache(settings.revocation_seconds)

    # -- issuing ---------------------------------------------------------------------------------------
    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        kid, key = self.keys.current()
        return jwt.encode({"alg": ALG, "kid": kid, "typ": typ}, claims, key)

    def access_token(self, *, scope: ScopeSet, client_id: str, user: User | None = None,
                     client: Client | None = None, patient: str | None = None, grant_id: str | None = None,
                     ttl: int | None = None) -> tuple[str, dict[str, Any]]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "iat": now, "nbf": now,
            "exp": now + (ttl or self.settings.access_token_ttl), "jti": secrets.token_urlsafe(18),
            "scope": scope.text(), "client_id": client_id,
        }
        if user is not None:
            claims.update(sub=user.username, kind=user.kind, roles=sorted(user.roles))
            for name, value in (("fhirUser", user.fhir_user), ("organization", user.organisation),
                                ("ods_code", user.ods_code), ("role_code", user.role_code),
                                ("practitioner_role", user.practitioner_role), ("name", user.display_name)):
                if value:
                    claims[name] = value
        elif client is not None:
            claims.update(sub=client.client_id, kind="system", roles=["system"])
            if client.organisation:
                claims["organization"] = client.organisation
            if client.ods_code:
                claims["ods_code"] = client.ods_code
        if patient:
            claims["patient"] = patient
        if grant_id:
            claims["grant"] = grant_id
        return self.sign(claims, ACCESS_TYP), claims

    def id_token(self, user: User, client_id: str, *, nonce: str | None, auth_time: int | None,
                 fhir_user: bool = True) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": user.username, "aud": client_id, "iat": now,
                                  "exp": now + self.settings.access_token_ttl}
        if fhir_user and user.fhir_user:
            claims["fhirUser"] = f"{self.settings.fhir_base}/{user.fhir_user}"
        if user.display_name:
            claims["name"] = user.display_name
        if nonce:
            claims["nonce"] = nonce
        if auth_time:
            claims["auth_time"] = auth_time
        return self.sign(claims)

    # -- verifying -------------------------------------------------------------------------------------
    def verify(self, token: str, *, allow_expired: bool = False) -> Verified:
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            header = obj.headers()
            unverified = json.loads(obj.payload)
        except (JoseError, ValueError, UnicodeError):
            raise InvalidToken("The access token is not a well-formed signed JWT") from None
        if not isinstance(unverified, dict):
            raise InvalidToken("The access token's payload is not a JSON object")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none" or alg.startswith("HS"):
            raise InvalidToken(f"Tokens signed with alg={alg!r} are not accepted")
        iss = unverified.get("iss")
        if iss == self.issuer:
            if header.get("typ") != ACCESS_TYP:
                raise InvalidToken("This is not an access token (typ must be at+jwt)")
            keyset, algorithms, audience, external = self.keys.verification_keys(), [ALG], self.audience, False
        elif self._external is not None and iss == self.settings.external_issuer:
            keyset = self._external.keys(header.get("kid"))
            algorithms = list(self.settings.external_algorithms)
            audience = self.settings.external_audience or self.audience
            external = True
        else:
            raise InvalidToken("The access token's issuer is not trusted by this server")
        if alg not in algorithms:
            raise InvalidToken(f"Tokens from this issuer must be signed with {', '.join(algorithms)}, not {alg}")
        try:
            claims = jwt.decode(token, keyset, algorithms=algorithms).claims
        except JoseError:
            raise InvalidToken("The access token's signature does not verify") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=self.settings.clock_skew,
            iss={"essential": True, "value": iss},
            aud={"essential": True, "value": audience},
            exp={"essential": not allow_expired},
            sub={"essential": True},
        )
        try:
            if allow_expired:
                claims_check = dict(claims)
                claims_check.pop("exp", None)
                registry.validate(claims_check)
            else:
                registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("The access token has expired") from None
        except ClaimError as exc:
            if exc.claim == "aud":
                raise InvalidToken("The access token was not issued for this FHIR server (aud)") from None
            raise InvalidToken(f"The access token's claims are not acceptable: {exc.description}") from None
        if not external and "jti" not in claims:
            raise InvalidToken("The access token has no jti")
        return Verified(claims, external)

    @staticmethod
    def revoked_ids(claims: dict[str, Any]) -> list[str]:
        return [v for v in (claims.get("jti"), claims.get("grant")) if isinstance(v, str)]

    @staticmethod
    def is_revoked(conn: Any, claims: dict[str, Any]) -> bool:
        ids = [v for v in (claims.get("jti"), claims.get("grant")) if isinstance(v, str)]
        if not ids:
            return False
        return conn.execute(select(auth_revoked.c.token_id).where(auth_revoked.c.token_id.in_(ids))).first() is not None

    # -- mapping to the request context ---------------------------------------------------------------------
    def principal(self, v: Verified) -> Principal:
        claims = v.claims
        cmap = dict(DEFAULT_CLAIMS_MAP)
        if v.external:
            cmap.update(self.settings.external_claims_map)

        def get(field: str) -> Any:
            return claim_path(claims, cmap[field])

        raw_scope = get("scope")
        if raw_scope is None and v.external:
            raw_scope = claims.get("scp")
        if isinstance(raw_scope, list):
            raw_scope = " ".join(str(s) for s in raw_scope)
        try:
            scopes = ScopeSet.parse(raw_scope if isinstance(raw_scope, str) else "")
        except ScopeError as exc:
            raise InvalidToken(f"The access token's scope is malformed: {exc}") from None
        fhir_user = _text(get("fhir_user"))
        if fhir_user and "/fhir/" in fhir_user:
            fhir_user = fhir_user.split("/fhir/", 1)[1]
        kind = _text(get("kind"))
        if not kind:
            kind = FHIR_USER_KINDS.get((fhir_user or "").split("/")[0], "system" if not fhir_user else "practitioner")
        patient = _text(get("patient"))
        if not patient and kind == "patient" and fhir_user and fhir_user.startswith("Patient/"):
            patient = fhir_user.split("/", 1)[1]
        roles = get("roles")
        if isinstance(roles, str):
            roles = roles.split()
        organisation = _text(get("organisation"))
        ods = _text(get("ods_code"))
        if not organisation and ods:
            organisation = None  # known only by ODS code; the policy matches ODS identifiers
        return Principal(
            subject=str(get("subject") or claims.get("sub")), kind=kind,
            client_id=_text(claims.get("client_id") or claims.get("azp")), fhir_user=fhir_user,
            organisation=organisation, ods_code=ods, role_code=_text(get("role_code")),
            roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
            patient=patient, scopes=scopes, token_id=_text(claims.get("jti")), claims=claims,
        )


def _text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    return str(value)


def claim_path(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path; a number steps into a list (e.g. `nhsid_nrbac_roles.0.role_code`)."""
    node: Any = claims
    for step in path.split("."):
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
    return node


class ExternalKeys:
    """The external issuer's JWKS, fetched over https and cached by this process (a cache, not state:
    every worker fetches its own). An unknown kid triggers a refetch, at most every 30 seconds."""

    TTL = 600
    MIN_REFETCH = 30

    def __init__(self, settings: Settings) -> None:
        self.url = settings.external_jwks_url
        self._set: KeySet | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def keys(self, kid: Any) -> KeySet:
        with self._lock:
            now = time.time()
            stale = self._set is None or now - self._fetched > self.TTL
            unknown = kid is not None and self._set is not None and all(k.kid != kid for k in self._set.keys)
            if stale or (unknown and now - self._fetched > self.MIN_REFETCH):
                try:
                    resp = httpx.get(self.url, timeout=5.0)  # type: ignore[arg-type]
                    resp.raise_for_status()
                    self._set = KeySet.import_key_set(resp.json())
                    self._fetched = now
                except (httpx.HTTPError, ValueError, JoseError) as exc:
                    log.warning("cannot fetch the external issuer's JWKS from %s: %s", self.url, exc)
                    if self._set is None:
                        raise InvalidToken("The external issuer's keys are unavailable") from None
            assert self._set is not None
            return self._set


class RevocationCache:
    """Which access tokens (and grants) are revoked, as every process sees it: the small `auth_revoked` table
    read again at most every `seconds` (0: on every request), so a revocation is honoured by every process
    within that many seconds, and at once by the process that made it."""

    def __init__(self, seconds: float) -> None:
        import threading

        self.seconds = seconds
        self.ids: frozenset[str] = frozenset()
        self.loaded = float("-inf")
        self._lock = threading.Lock()

    def note(self, *ids: str) -> None:
        with self._lock:
            self.ids = self.ids | frozenset(ids)

    def is_revoked(self, db: Any, claims: dict[str, Any]) -> bool:
        import time

        ids = TokenService.revoked_ids(claims)
        if not ids:
            return False
        if self.seconds <= 0:
            with db.read() as conn:
                return TokenService.is_revoked(conn, claims)
        if time.monotonic() - self.loaded > self.seconds:
            with self._lock:
                if time.monotonic() - self.loaded > self.seconds:
                    with db.read() as conn:
                        found = frozenset(r[0] for r in conn.execute(
                            select(auth_revoked.c.token_id).where(auth_revoked.c.expires_at > int(time.time()))))
                    self.ids = found | frozenset(i for i in self.ids if i in found)
                    self.loaded = time.monotonic()
        return any(i in self.ids for i in ids)
