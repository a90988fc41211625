"""Audit tables: one compact, append-only row per access, and the seals over them.

- `audit_log`: one row per access (or sign-in, token, decision, break-glass, or an AuditEvent a partner sent),
  in order of arrival (`seq`). What is searched is a column (when, who, which patient, what, outcome, purpose);
  the rest is one compact JSON text (`detail`). There are no per-event index rows: only this table's own
  indexes. Rendered as IHE BALP AuditEvents when read (service/audit/render.py).
- `audit_also`: an access that reached several people has one row here for each person after the first
  (`audit_log.patient_id`), so every person's access log finds it; it is derived from the row's `detail` and
  checked against it by `sharedcare audit verify`.
- `audit_seal`: sealed batches of rows (service/audit/seal.py): the rows' ranges, a hash chain over their
  digests, the previous seal's MAC and this seal's MAC under a key the database does not hold.
The database refuses UPDATE and DELETE on all three (triggers, set by migration 0007).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, SmallInteger, String, Table, Text

from service.storage.tables import BigId, metadata

audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("recorded", BigInteger, nullable=False),  # microseconds UTC, when the server recorded it
    Column("patient_id", String(64), nullable=True),  # the (first) person concerned: the shard key
    Column("kind", String(16), nullable=False),  # rest | login | token | decision | break-glass | partner
    Column("interaction", String(64), nullable=False),  # read, search-type, operation:everything, login, ...
    Column("action", String(1), nullable=False),  # C R U D E
    Column("outcome", SmallInteger, nullable=False),  # 0 success, 4 refused / client error, 8 server error
    Column("status", SmallInteger, nullable=True),  # the HTTP status of a FHIR interaction
    Column("agent", String(256), nullable=True),  # who: their FHIR user (Practitioner/x), else user:/client:<id>
    Column("altid", String(128), nullable=True),  # who, by name: the user id, or the client id of a system
    Column("organisation", String(256), nullable=True),  # on whose behalf: Organization/x or the ODS token
    Column("client", String(128), nullable=True),  # the app or partner system
    Column("purpose", String(64), nullable=True),  # purposes of use, comma-separated (BTG when break-glass)
    Column("target", String(256), nullable=True),  # Type/id/_history/v, or the type searched
    Column("request_id", String(64), nullable=True),
    Column("detail", Text, nullable=False),  # compact JSON: notes, query, patients, user, remote, ...
    Index("ix_audit_log_patient", "patient_id", "seq"),
    Index("ix_audit_log_recorded", "recorded"),
    Index("ix_audit_log_agent", "agent", "seq"),
    Index("ix_audit_log_altid", "altid", "seq"),
)

audit_also = Table(
    "audit_also", metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

audit_seal = Table(
    "audit_seal", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # 1, 2, 3, ...: a gap is a removed seal
    Column("sealed_at", BigInteger, nullable=False),
    Column("ranges", Text, nullable=False),  # JSON [[lo, hi], ...]: every row with lo <= seq <= hi
    Column("count", Integer, nullable=False),
    Column("digests", Text, nullable=False),  # 16 hex characters per row, in seq order (to name a bad row)
    Column("root", String(64), nullable=False),  # the hash chain over the rows' full digests
    Column("prev_mac", String(64), nullable=False),
    Column("mac", String(64), nullable=False),  # HMAC-SHA256 under the audit key (not in the database)
    Column("key_id", String(16), nullable=False),
)
