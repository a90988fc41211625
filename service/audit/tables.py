"""Audit tables: the hash chains over the stored AuditEvents, and the patient index for access logs.

AuditEvents themselves are ordinary resources (`resource` / `resource_version`), so they are read,
searched and exported through the one data path. These tables add what the record store cannot:
- `audit_lane`: the head of each chain (lane). Appending to a lane locks only its head row, so K
  lanes let K writers append at once (PostgreSQL); SQLite serialises writers anyway.
- `audit_chain`: one row per event: its lane and position, the previous hash and its own hash.
- `audit_patient`: which patients each event concerns, newest first, for "who has looked at my record".
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from service.storage.tables import metadata

audit_lane = Table(
    "audit_lane", metadata,
    Column("lane", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),  # position of the newest event (0: empty)
    Column("head_hash", String(64), nullable=False),
)

audit_chain = Table(
    "audit_chain", metadata,
    Column("lane", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False),
    Column("recorded", BigInteger, nullable=False),  # microseconds UTC
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ux_audit_chain_event", "event_id", unique=True),
)

audit_patient = Table(
    "audit_patient", metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("recorded", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), primary_key=True),
)
