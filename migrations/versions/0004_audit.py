"""Audit trail: hash chains over the AuditEvents (lanes) and the patient index for access logs.

Revision ID: 0004_audit
Revises: 0003_identity
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_audit"
down_revision = "0003_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_lane",
        sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_chain",
        sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("recorded", sa.BigInteger, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ux_audit_chain_event", "audit_chain", ["event_id"], unique=True)
    op.create_table(
        "audit_patient",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("recorded", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("audit_patient")
    op.drop_index("ux_audit_chain_event", table_name="audit_chain")
    op.drop_table("audit_chain")
    op.drop_table("audit_lane")
