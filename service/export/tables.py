"""Bulk export tables: the jobs (a durable queue), their output files and the files' bytes in chunks.

- `export_job`: one row per `$export` kick-off: who asked (the client's verified token claims, so the worker runs
  as that client: same scopes, purposes of use and care relationships), what (level, group, types, `_since`,
  `_typeFilter`), where it is (`state` queued -> running -> done | failed | cancelled), the worker's lease
  (`lease_until_us`: a job whose worker died is claimed again once the lease has run out) and when its files
  expire. Not patient data: it names no one (a Group export names the Group, not its members).
- `export_file`: one NDJSON file of a job (one resource type; large sets are split), with its resource count and
  the patients whose data it holds (named in the audit row of each download).
- `export_chunk`: a file's bytes, in order. PATIENT DATA: each chunk holds exported resources of the patients its
  file lists (no single owner per row; with Citus it would be colocated by job, not sharded by patient). Kept
  in the database, not on a local disk, because API processes are stateless and share one PostgreSQL: any
  process can serve any file. Deleted when the job is cancelled or its files expire.
Times are integer microseconds UTC.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from service.storage.tables import metadata

export_job = Table(
    "export_job", metadata,
    Column("id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # queued | running | done | failed | cancelled
    Column("level", String(16), nullable=False),  # system | patient | group
    Column("group_id", String(64), nullable=True),
    Column("spec", Text, nullable=False),  # JSON: types, since, type filters, the kick-off URL
    Column("owner", String(256), nullable=False),  # the token subject (client or user) that asked: files are theirs
    Column("client_id", String(128), nullable=True),
    Column("caller", Text, nullable=False),  # JSON: the verified token claims and purposes of use (not the token)
    Column("created_us", BigInteger, nullable=False),
    Column("transaction_us", BigInteger, nullable=True),  # the manifest's transactionTime (when the run began)
    Column("worker", String(128), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("progress", String(256), nullable=True),
    Column("exported", BigInteger, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("finished_us", BigInteger, nullable=True),
    Column("expires_us", BigInteger, nullable=False),
    Index("ix_export_job_queue", "state", "created_us"),
    Index("ix_export_job_expires", "expires_us"),
)

export_file = Table(
    "export_file", metadata,
    Column("job_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("patients", Text, nullable=False),  # space-separated ids of the people whose data the file holds
)

export_chunk = Table(
    "export_chunk", metadata,
    Column("job_id", String(64), primary_key=True),
    Column("file_seq", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),  # patient data: NDJSON lines, whole lines only
)
