"""Identity tables: users, clients, authorization codes, refresh tokens, revoked token ids, used client
assertion ids and rate-limit counters. Only Alembic creates them (migrations/versions/0003_identity.py).

Nothing here is kept in process memory: every worker sees the same state. Secrets (passwords, codes,
refresh tokens) are stored only as hashes. Times are integer seconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from service.storage.tables import metadata

auth_user = Table(
    "auth_user", metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", Text, nullable=True),  # argon2id; NULL = cannot log in with a password
    Column("kind", String(32), nullable=False),  # practitioner | patient | relatedPerson | admin | ig
    Column("display_name", String(256), nullable=True),
    Column("fhir_user", String(256), nullable=True),  # Practitioner/x, Patient/y, RelatedPerson/z
    Column("practitioner_role", String(256), nullable=True),  # PractitionerRole/r
    Column("organisation", String(256), nullable=True),  # Organization/o
    Column("ods_code", String(16), nullable=True),
    Column("role_code", String(16), nullable=True),  # SDS job role, e.g. R8001
    Column("roles", Text, nullable=False, default=""),  # space-separated service roles
    Column("patient", String(64), nullable=True),  # the patient a patient user is, or a carer cares for
    Column("scope", Text, nullable=False),  # the most this user may be granted (SMART scopes)
    Column("demo_only", Boolean, nullable=False, default=False),  # password works only in demo mode
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
)

auth_client = Table(
    "auth_client", metadata,
    Column("client_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("auth_method", String(32), nullable=False),  # none (public) | private_key_jwt
    Column("grant_types", Text, nullable=False),  # space-separated
    Column("redirect_uris", Text, nullable=False, default=""),  # space-separated, exact match
    Column("scope", Text, nullable=False),  # the most this client may be granted
    Column("organisation", String(256), nullable=True),
    Column("ods_code", String(16), nullable=True),
    Column("jwks", Text, nullable=True),  # registered public keys (JSON Web Key Set)
    Column("jwks_url", Text, nullable=True),
    Column("can_introspect", Boolean, nullable=False, default=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
)

auth_code = Table(
    "auth_code", metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("username", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64), nullable=True),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("nonce", String(256), nullable=True),
    Column("auth_time", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

auth_refresh_token = Table(
    "auth_refresh_token", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("username", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64), nullable=True),
    Column("status", String(16), nullable=False),  # active | rotated | revoked
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_auth_refresh_token_grant", "grant_id"),
)

# Access tokens are JWTs; revoking one (or a whole grant) records its jti / grant id until it expires.
auth_revoked = Table(
    "auth_revoked", metadata,
    Column("token_id", String(64), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
)

# Client assertions (private_key_jwt) seen, so a replayed assertion is refused.
auth_assertion_jti = Table(
    "auth_assertion_jti", metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
)

# Fixed-window counters for login and token-endpoint rate limits (shared by every worker).
auth_rate_limit = Table(
    "auth_rate_limit", metadata,
    Column("key", String(256), primary_key=True),
    Column("window_start", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
)
