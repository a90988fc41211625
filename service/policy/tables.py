"""Policy tables: care relationships, break-glass grants (the IG review queue) and the National Data Opt-out.

- `care_relationship`: who has a legitimate care relationship with which patient, derived at write time
  (in the write's own transaction, like the search indexes) from CareTeam, EpisodeOfCare, ServiceRequest,
  Task and Patient (registered GP, managing organisation). `party` is a literal reference
  (`Organization/x`, `Practitioner/y`, `PractitionerRole/z`) or an identifier token (`system|value`, e.g. an
  ODS code). Times are microseconds UTC; NULL bounds are open. Keyed by patient: the shard key.
- `break_glass`: one row per emergency access grant: who, for which patient, why, until when, and its
  review by an IG lead (status pending -> reviewed). Each access under a grant is flagged in its AuditEvent
  and counted here.
- `data_opt_out`: the National Data Opt-out list, by NHS number (imported with `sharedcare optout import`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from service.storage.tables import metadata

care_relationship = Table(
    "care_relationship", metadata,
    Column("patient_id", String(64), nullable=False),
    Column("party", String(256), nullable=False),
    Column("source_type", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # care-team | episode | referral | registered-gp | managing-org
    Column("start_us", BigInteger, nullable=True),
    Column("end_us", BigInteger, nullable=True),
    Index("ix_care_relationship_party", "party", "patient_id"),
    Index("ix_care_relationship_patient", "patient_id", "party"),
    Index("ix_care_relationship_source", "source_type", "source_id"),
)

break_glass = Table(
    "break_glass", metadata,
    Column("id", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("subject", String(256), nullable=False),  # token sub: user name
    Column("fhir_user", String(256), nullable=True),
    Column("organisation", String(256), nullable=True),
    Column("ods_code", String(64), nullable=True),
    Column("role_code", String(64), nullable=True),
    Column("reason", Text, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("opened_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("accesses", Integer, nullable=False, default=0),
    Column("last_access_us", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # pending | reviewed
    Column("outcome", String(32), nullable=True),  # appropriate | inappropriate
    Column("reviewer", String(256), nullable=True),
    Column("reviewed_us", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    Index("ix_break_glass_active", "subject", "patient_id", "expires_us"),
    Index("ix_break_glass_queue", "status", "opened_us"),
    Index("ix_break_glass_patient", "patient_id", "opened_us"),
)

data_opt_out = Table(
    "data_opt_out", metadata,
    Column("nhs_number", String(10), primary_key=True),
    Column("source", String(128), nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
)
