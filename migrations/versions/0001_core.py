"""Core record store: current resources and every version.

Revision ID: 0001_core
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("res_type", sa.String(64), primary_key=True),
        sa.Column("res_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_index("ix_resource_type_updated", "resource", ["res_type", "last_updated"])
    op.create_table(
        "resource_version",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_index("ux_resource_version", "resource_version", ["res_type", "res_id", "version"], unique=True)
    op.create_index("ix_resource_version_updated", "resource_version", ["last_updated", "seq"])
    op.create_index("ix_resource_version_type_updated", "resource_version", ["res_type", "last_updated", "seq"])


def downgrade() -> None:
    op.drop_table("resource_version")
    op.drop_table("resource")
