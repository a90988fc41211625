"""Identity, clients and tokens: users, clients, authorization codes, refresh tokens, revoked token ids,
used client-assertion ids and rate-limit counters.

Revision ID: 0003_identity
Revises: 0002_search
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_identity"
down_revision = "0002_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_user",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("fhir_user", sa.String(256), nullable=True),
        sa.Column("practitioner_role", sa.String(256), nullable=True),
        sa.Column("organisation", sa.String(256), nullable=True),
        sa.Column("ods_code", sa.String(16), nullable=True),
        sa.Column("role_code", sa.String(16), nullable=True),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("demo_only", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("grant_types", sa.Text, nullable=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("organisation", sa.String(256), nullable=True),
        sa.Column("ods_code", sa.String(16), nullable=True),
        sa.Column("jwks", sa.Text, nullable=True),
        sa.Column("jwks_url", sa.Text, nullable=True),
        sa.Column("can_introspect", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "auth_code",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        sa.Column("nonce", sa.String(256), nullable=True),
        sa.Column("auth_time", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "auth_refresh_token",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_auth_refresh_token_grant", "auth_refresh_token", ["grant_id"])
    op.create_table(
        "auth_revoked",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "auth_assertion_jti",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "auth_rate_limit",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for name in ("auth_rate_limit", "auth_assertion_jti", "auth_revoked", "auth_refresh_token", "auth_code",
                 "auth_client", "auth_user"):
        op.drop_table(name)
