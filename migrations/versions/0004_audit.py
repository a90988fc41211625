"""Audit trail and break-glass review (placeholder until that part lands; keeps the revision chain fixed).

Revision ID: 0004_audit
Revises: 0003_identity
"""

revision = "0004_audit"
down_revision = "0003_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
