"""Identity, clients and tokens (placeholder until that part lands; keeps the revision chain fixed).

Revision ID: 0003_identity
Revises: 0002_search
"""

revision = "0003_identity"
down_revision = "0002_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
