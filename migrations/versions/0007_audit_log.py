"""The audit log: one compact append-only row per access, sealed in batches; index rows keyed by patient.

- `audit_log`, `audit_also`, `audit_seal` (service/audit/tables.py), which the database refuses to UPDATE or
  DELETE (and, on PostgreSQL, to TRUNCATE): triggers.
- AuditEvents stored as resources by earlier versions become audit_log rows (their JSON kept as it was, in
  `detail.event`), and leave the resource tables with their index rows; the old hash chains go (the rows are
  sealed afresh by the next `sharedcare audit seal`).
- Every search index table carries the owner patient (`patient_id`), filled from the resource's.

Revision ID: 0007_audit_log
Revises: 0006_owners
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0007_audit_log"
down_revision = "0006_owners"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AUDIT_TABLES = ("audit_log", "audit_also", "audit_seal")
INDEX_TABLES = ("sp_token", "sp_string", "sp_reference", "sp_date", "sp_number", "sp_quantity", "sp_uri")
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION sharedcare_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("recorded", sa.BigInteger, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("interaction", sa.String(64), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("outcome", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=True),
        sa.Column("agent", sa.String(256), nullable=True),
        sa.Column("altid", sa.String(128), nullable=True),
        sa.Column("organisation", sa.String(256), nullable=True),
        sa.Column("client", sa.String(128), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("target", sa.String(256), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,  # seq is never reused, even after a rollback
    )
    op.create_index("ix_audit_log_patient", "audit_log", ["patient_id", "seq"])
    op.create_index("ix_audit_log_recorded", "audit_log", ["recorded"])
    op.create_index("ix_audit_log_agent", "audit_log", ["agent", "seq"])
    op.create_index("ix_audit_log_altid", "audit_log", ["altid", "seq"])
    op.create_table(
        "audit_also",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_table(
        "audit_seal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sealed_at", sa.BigInteger, nullable=False),
        sa.Column("ranges", sa.Text, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("digests", sa.Text, nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("prev_mac", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
    )
    bind = op.get_bind()
    _move_audit_events(bind)
    for table in ("audit_patient", "audit_chain", "audit_lane"):
        op.drop_table(table)
    for table in INDEX_TABLES:
        op.add_column(table, sa.Column("patient_id", sa.String(64), nullable=True))
        op.execute(f"UPDATE {table} SET patient_id = (SELECT r.patient_id FROM resource r WHERE "
                   f"r.res_type = {table}.res_type AND r.res_id = {table}.res_id)")
    append_only(bind)


def append_only(bind: sa.engine.Connection) -> None:
    if bind.dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for table in AUDIT_TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION sharedcare_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION sharedcare_append_only()")
    else:
        for table in AUDIT_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                           f"SELECT RAISE(ABORT, 'the audit trail is append-only: {verb} on {table} is refused'); END")


def _move_audit_events(bind: sa.engine.Connection) -> None:
    """AuditEvent resources of earlier versions -> audit_log rows (oldest first), kept as they were."""
    rows = bind.execute(sa.text("SELECT res_id, last_updated, patient_id, content FROM resource "
                                "WHERE res_type = 'AuditEvent' AND content IS NOT NULL ORDER BY last_updated, res_id"))
    insert = sa.text("INSERT INTO audit_log (recorded, patient_id, kind, interaction, action, outcome, agent, "
                     "target, detail) VALUES (:recorded, :patient, 'legacy', :interaction, :action, :outcome, "
                     ":agent, :target, :detail)")
    for rid, lu, patient, content in rows.fetchall():
        event = json.loads(content)
        sub = (event.get("subtype") or [{}])[0].get("code") or (event.get("type") or {}).get("code") or "unknown"
        who = next((a.get("who", {}).get("reference") for a in event.get("agent") or [] if a.get("requestor")), None)
        bind.execute(insert, {"recorded": lu, "patient": patient, "interaction": str(sub)[:64],
                              "action": str(event.get("action") or "E")[:1],
                              "outcome": int(event.get("outcome") or 0) if str(event.get("outcome", "0")).isdigit()
                              else 0, "agent": who, "target": f"AuditEvent/{rid}",
                              "detail": json.dumps({"event": event}, separators=(",", ":"))})
    for table in ("resource", "resource_version", "sp_compartment", *INDEX_TABLES):
        op.execute(f"DELETE FROM {table} WHERE res_type = 'AuditEvent'")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in AUDIT_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS sharedcare_append_only()")
    for table in INDEX_TABLES:
        op.drop_column(table, "patient_id")
    for table in AUDIT_TABLES:
        op.drop_table(table)
    op.create_table("audit_lane", sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("seq", sa.BigInteger, nullable=False), sa.Column("head_hash", sa.String(64), nullable=False))
    op.create_table("audit_chain", sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
                    sa.Column("event_id", sa.String(64), nullable=False), sa.Column("recorded", sa.BigInteger, nullable=False),
                    sa.Column("prev_hash", sa.String(64), nullable=False), sa.Column("hash", sa.String(64), nullable=False))
    op.create_index("ux_audit_chain_event", "audit_chain", ["event_id"], unique=True)
    op.create_table("audit_patient", sa.Column("patient_id", sa.String(64), primary_key=True),
                    sa.Column("recorded", sa.BigInteger, primary_key=True, autoincrement=False),
                    sa.Column("event_id", sa.String(64), primary_key=True))
