"""Policy: care relationships, break-glass grants (IG review queue), the National Data Opt-out list.

Revision ID: 0005_policy
Revises: 0004_audit
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_policy"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "care_relationship",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("party", sa.String(256), nullable=False),
        sa.Column("source_type", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=True),
        sa.Column("end_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_care_relationship_party", "care_relationship", ["party", "patient_id"])
    op.create_index("ix_care_relationship_patient", "care_relationship", ["patient_id", "party"])
    op.create_index("ix_care_relationship_source", "care_relationship", ["source_type", "source_id"])
    op.create_table(
        "break_glass",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("fhir_user", sa.String(256), nullable=True),
        sa.Column("organisation", sa.String(256), nullable=True),
        sa.Column("ods_code", sa.String(64), nullable=True),
        sa.Column("role_code", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("opened_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("accesses", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_access_us", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("reviewer", sa.String(256), nullable=True),
        sa.Column("reviewed_us", sa.BigInteger, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_break_glass_active", "break_glass", ["subject", "patient_id", "expires_us"])
    op.create_index("ix_break_glass_queue", "break_glass", ["status", "opened_us"])
    op.create_index("ix_break_glass_patient", "break_glass", ["patient_id", "opened_us"])
    op.create_table(
        "data_opt_out",
        sa.Column("nhs_number", sa.String(10), primary_key=True),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("data_opt_out")
    op.drop_index("ix_break_glass_patient", table_name="break_glass")
    op.drop_index("ix_break_glass_queue", table_name="break_glass")
    op.drop_index("ix_break_glass_active", table_name="break_glass")
    op.drop_table("break_glass")
    op.drop_index("ix_care_relationship_source", table_name="care_relationship")
    op.drop_index("ix_care_relationship_patient", table_name="care_relationship")
    op.drop_index("ix_care_relationship_party", table_name="care_relationship")
    op.drop_table("care_relationship")
