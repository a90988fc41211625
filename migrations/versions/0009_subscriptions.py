"""Subscriptions: the registry of accepted R4 rest-hook Subscriptions and the durable queue of their deliveries
(service/subscriptions/tables.py). Neither holds resource content.

Revision ID: 0009_subscriptions
Revises: 0008_bulk_export
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_subscriptions"
down_revision = "0008_bulk_export"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("criteria_type", sa.String(64), nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("payload", sa.String(16), nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("end_at", sa.BigInteger, nullable=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_subscription_type", "subscription", ["criteria_type", "status"])
    op.create_table(
        "subscription_delivery",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_subscription_delivery_due", "subscription_delivery", ["state", "next_at"])
    op.create_index("ix_subscription_delivery_sub", "subscription_delivery", ["subscription_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_subscription_delivery_sub", table_name="subscription_delivery")
    op.drop_index("ix_subscription_delivery_due", table_name="subscription_delivery")
    op.drop_table("subscription_delivery")
    op.drop_index("ix_subscription_type", table_name="subscription")
    op.drop_table("subscription")
