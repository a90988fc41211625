"""Full-text search (`_text` over the narrative, `_content` over the whole resource): `sp_text`, one row per
resource with its words (case- and accent-free, service/search/fulltext.py). PostgreSQL: GIN indexes on
`to_tsvector('simple', ...)` of each column. SQLite: an FTS5 table over `sp_text` (external content), kept in
step by triggers.

Revision ID: 0010_search_text
Revises: 0009_subscriptions
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_search_text"
down_revision = "0009_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_text",
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("narrative", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
    )
    op.create_index("ix_sp_text_res", "sp_text", ["res_type", "res_id"])
    if op.get_bind().dialect.name == "postgresql":
        for col in ("narrative", "content"):
            op.execute(f"CREATE INDEX ix_sp_text_{col} ON sp_text USING gin (to_tsvector('simple'::regconfig, {col}))")
    else:
        op.execute("CREATE VIRTUAL TABLE sp_text_fts USING fts5(narrative, content, content='sp_text', "
                   "tokenize='unicode61 remove_diacritics 2')")
        op.execute("CREATE TRIGGER sp_text_ai AFTER INSERT ON sp_text BEGIN INSERT INTO sp_text_fts(rowid, "
                   "narrative, content) VALUES (new.rowid, new.narrative, new.content); END")
        op.execute("CREATE TRIGGER sp_text_ad AFTER DELETE ON sp_text BEGIN INSERT INTO sp_text_fts(sp_text_fts, "
                   "rowid, narrative, content) VALUES ('delete', old.rowid, old.narrative, old.content); END")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS sp_text_ad")
        op.execute("DROP TRIGGER IF EXISTS sp_text_ai")
        op.execute("DROP TABLE IF EXISTS sp_text_fts")
    op.drop_table("sp_text")
