"""Core storage tables. Only Alembic creates or changes them (see migrations/).

`resource` holds the current version of every resource (one indexed lookup per read; a deleted resource
keeps what was deleted, so the policy can decide who may know it existed); `resource_version` holds every
version, including deletions (content NULL), for vread and history. Both carry the owners worked out by
`service.ownership` (`owners`, space-separated patient ids) and the primary owner `patient_id`, the shard key
of patient data. Times are integer microseconds since the Unix epoch (UTC): exact, portable, cheap to compare.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

BigId = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource", metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("owners", Text, nullable=True),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
    Index("ix_resource_patient", "patient_id", "res_type"),
)

resource_version = Table(
    "resource_version", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("owners", Text, nullable=True),
    Index("ux_resource_version", "res_type", "res_id", "version", unique=True),
    Index("ix_resource_version_updated", "last_updated", "seq"),
    Index("ix_resource_version_type_updated", "res_type", "last_updated", "seq"),
    Index("ix_resource_version_patient", "patient_id", "last_updated", "seq"),
)
