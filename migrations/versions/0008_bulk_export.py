"""Bulk export: the job queue, its files and the files' chunks (service/export/tables.py).

`export_chunk` holds patient data (exported resources; each file lists the patients it holds); `export_job`
names no one.

Revision ID: 0008_bulk_export
Revises: 0007_audit_log
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_bulk_export"
down_revision = "0007_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("transaction_us", sa.BigInteger, nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress", sa.String(256), nullable=True),
        sa.Column("exported", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("finished_us", sa.BigInteger, nullable=True),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_export_job_queue", "export_job", ["state", "created_us"])
    op.create_index("ix_export_job_expires", "export_job", ["expires_us"])
    op.create_table(
        "export_file",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("patients", sa.Text, nullable=False),
    )
    # PATIENT DATA: exported resources (the file's `patients` say whose)
    op.create_table(
        "export_chunk",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("file_seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("export_chunk")
    op.drop_table("export_file")
    op.drop_index("ix_export_job_expires", table_name="export_job")
    op.drop_index("ix_export_job_queue", table_name="export_job")
    op.drop_table("export_job")
