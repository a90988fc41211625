"""Users and clients: records in the database, password hashing (argon2id), default scope ceilings.

A user is a professional (linked to a Practitioner and PractitionerRole: organisation with ODS code, SDS
job role), a patient, a carer (RelatedPerson of a patient), an IG lead or an administrator. A client is a
SMART app (public, PKCE) or a partner system (private_key_jwt with a registered JWKS) belonging to an
organisation.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.engine import Connection

from service.auth.scopes import ScopeSet
from service.auth.tables import auth_client, auth_user

KINDS = ("practitioner", "patient", "relatedPerson", "admin", "ig")
IDENTITY = "openid fhirUser offline_access online_access"
CEILINGS = {
    "practitioner": f"user/*.cruds patient/*.cruds launch/patient {IDENTITY}",
    "patient": f"patient/*.rs patient/Consent.cru patient/QuestionnaireResponse.cru patient/Goal.cru launch/patient "
               f"{IDENTITY}",
    "relatedPerson": f"patient/*.rs patient/Consent.cru launch/patient {IDENTITY}",  # consents: only with authority
    "ig": f"user/*.rs {IDENTITY}",
    "admin": f"system/*.cruds user/*.cruds patient/*.cruds launch/patient {IDENTITY}",
}
DEFAULT_ROLES = {"patient": "patient", "relatedPerson": "carer", "ig": "ig-lead", "admin": "admin"}
SYSTEM_CEILING = "system/*.cruds"

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
_DUMMY_HASH = _hasher.hash("not-a-password-of-anyone")


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher.hash(password)


@dataclass(frozen=True)
class User:
    username: str
    kind: str
    scope: str
    display_name: str | None = None
    fhir_user: str | None = None
    practitioner_role: str | None = None
    organisation: str | None = None
    ods_code: str | None = None
    role_code: str | None = None
    roles: frozenset[str] = frozenset()
    patient: str | None = None
    demo_only: bool = False
    active: bool = True

    @property
    def ceiling(self) -> ScopeSet:
        return ScopeSet.parse(self.scope)

    def get_user_id(self) -> str:  # Authlib
        return self.username

    def principal(self, scopes: ScopeSet | None = None) -> Any:
        """The user as a caller (before a token exists: the sign-in page's checks go through the repository)."""
        from service.access.context import Principal

        claims = {"practitioner_role": self.practitioner_role} if self.practitioner_role else {}
        return Principal(subject=self.username, kind=self.kind, fhir_user=self.fhir_user,
                         organisation=self.organisation, ods_code=self.ods_code, role_code=self.role_code,
                         roles=self.roles, patient=self.patient, scopes=scopes or self.ceiling, claims=claims)


def _user(row: Any) -> User:
    return User(username=row.username, kind=row.kind, scope=row.scope, display_name=row.display_name,
                fhir_user=row.fhir_user, practitioner_role=row.practitioner_role, organisation=row.organisation,
                ods_code=row.ods_code, role_code=row.role_code, roles=frozenset((row.roles or "").split()),
                patient=row.patient, demo_only=row.demo_only, active=row.active)


def get_user(conn: Connection, username: str) -> User | None:
    row = conn.execute(select(auth_user).where(auth_user.c.username == username)).first()
    return _user(row) if row else None


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(auth_user).order_by(auth_user.c.username))]


def check_password(conn: Connection, username: str, password: str, *, demo: bool) -> User | None:
    """The active user with this password, else None. Takes the same time whether or not the user exists."""
    row = conn.execute(select(auth_user).where(auth_user.c.username == username)).first()
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if row is None or not row.password_hash or not ok or not row.active:
        return None
    if row.demo_only and not demo:
        return None  # demo passwords are documented publicly: never valid outside demo mode
    return _user(row)


def upsert_user(conn: Connection, user: User, password_hash: str | None, *, keep_password: bool = False) -> None:
    values = {"username": user.username, "kind": user.kind, "scope": user.scope, "display_name": user.display_name,
                  "fhir_user": user.fhir_user, "practitioner_role": user.practitioner_role,
                  "organisation": user.organisation, "ods_code": user.ods_code, "role_code": user.role_code,
                  "roles": " ".join(sorted(user.roles)), "patient": user.patient, "demo_only": user.demo_only,
                  "active": user.active}
    existing = conn.execute(select(auth_user.c.username, auth_user.c.password_hash)
                            .where(auth_user.c.username == user.username)).first()
    if existing is None:
        conn.execute(auth_user.insert().values(password_hash=password_hash, created_at=int(time.time()), **values))
        return
    if not keep_password:
        values["password_hash"] = password_hash
    conn.execute(auth_user.update().where(auth_user.c.username == user.username).values(**values))


@dataclass(frozen=True)
class Client:
    """A registered OAuth client (implements Authlib's ClientMixin)."""

    client_id: str
    name: str
    auth_method: str  # none | private_key_jwt
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    scope: str
    organisation: str | None = None
    ods_code: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    can_introspect: bool = False
    active: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ceiling(self) -> ScopeSet:
        return ScopeSet.parse(self.scope)

    @property
    def is_public(self) -> bool:
        return self.auth_method == "none"

    # -- Authlib ClientMixin --------------------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        return self.ceiling.grant(ScopeSet.parse(scope)).text()

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(hmac.compare_digest(redirect_uri, u) for u in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # no shared secrets: public clients use PKCE, confidential ones private_key_jwt

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _client(row: Any) -> Client:
    return Client(client_id=row.client_id, name=row.name, auth_method=row.auth_method,
                  grant_types=tuple(row.grant_types.split()), redirect_uris=tuple((row.redirect_uris or "").split()),
                  scope=row.scope, organisation=row.organisation, ods_code=row.ods_code,
                  jwks=json.loads(row.jwks) if row.jwks else None, jwks_url=row.jwks_url,
                  can_introspect=row.can_introspect, active=row.active)


def get_client(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(select(auth_client).where(auth_client.c.client_id == client_id)).first()
    if row is None or not row.active:
        return None
    return _client(row)


def list_clients(conn: Connection) -> list[Client]:
    return [_client(r) for r in conn.execute(select(auth_client).order_by(auth_client.c.client_id))]


def upsert_client(conn: Connection, client: Client) -> None:
    if client.auth_method not in ("none", "private_key_jwt"):
        raise ValueError("auth_method must be none (public, PKCE) or private_key_jwt")
    if client.auth_method == "private_key_jwt" and not (client.jwks or client.jwks_url):
        raise ValueError(f"client {client.client_id!r} uses private_key_jwt but has no registered JWKS")
    if client.auth_method == "none" and "client_credentials" in client.grant_types:
        raise ValueError("a public client cannot use client_credentials")
    if "authorization_code" in client.grant_types and not client.redirect_uris:
        raise ValueError("a client using authorization_code needs at least one redirect URI")
    ScopeSet.parse(client.scope)  # raises ScopeError when malformed
    values = {"name": client.name, "auth_method": client.auth_method, "grant_types": " ".join(client.grant_types),
                  "redirect_uris": " ".join(client.redirect_uris), "scope": client.scope,
                  "organisation": client.organisation, "ods_code": client.ods_code,
                  "jwks": json.dumps(client.jwks) if client.jwks else None, "jwks_url": client.jwks_url,
                  "can_introspect": client.can_introspect, "active": client.active}
    exists = conn.execute(select(auth_client.c.client_id).where(auth_client.c.client_id == client.client_id)).first()
    if exists is None:
        conn.execute(auth_client.insert().values(client_id=client.client_id, created_at=int(time.time()), **values))
    else:
        conn.execute(auth_client.update().where(auth_client.c.client_id == client.client_id).values(**values))
