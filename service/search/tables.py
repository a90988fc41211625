"""Search index tables: one row per extracted value, rebuilt for a resource on every write.

Every table is keyed by (res_type, res_id) like `resource`, so a shard by resource (or, through
`sp_compartment`, by patient) keeps a resource's index rows with it. `param` is the search parameter
code. Strings that are searched by prefix use the "C" collation on PostgreSQL so that a btree range
(`value >= 'smi' AND value < 'smj'`) is exact and index-backed; SQLite's default BINARY collation
behaves the same. Dates are integer microseconds UTC as a [low, high] range (inclusive), numbers and
quantities are doubles. Indexed text is cut to 200 characters (an exact match past that is not
guaranteed).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table, Text

from service.storage.tables import metadata

CString = String(200).with_variant(String(200, collation="C"), "postgresql")
MAXLEN = 200


def _key() -> list[Column]:
    return [Column("res_type", String(64), nullable=False), Column("res_id", String(64), nullable=False),
            Column("param", String(64), nullable=False),
            Column("patient_id", String(64), nullable=True)]  # the resource's primary owner: the shard key


sp_token = Table(
    "sp_token", metadata, *_key(),
    Column("system", CString, nullable=False),  # '' when the value has no system
    Column("code", CString, nullable=False),
    Column("text", CString, nullable=True),  # normalised display/text, for :text
    Index("ix_sp_token_code", "res_type", "param", "code", "system", "res_id"),
    Index("ix_sp_token_res", "res_type", "res_id"),
)

sp_string = Table(
    "sp_string", metadata, *_key(),
    Column("value", CString, nullable=False),  # normalised: case-folded, accents removed
    Column("exact", CString, nullable=False),  # as written
    Index("ix_sp_string_value", "res_type", "param", "value", "res_id"),
    Index("ix_sp_string_res", "res_type", "res_id"),
)

sp_reference = Table(
    "sp_reference", metadata, *_key(),
    Column("target_type", String(64), nullable=True),  # local (or our own absolute) references
    Column("target_id", String(64), nullable=True),
    Column("url", CString, nullable=True),  # external absolute URL or canonical
    Column("ident_system", CString, nullable=True),  # Reference.identifier, for :identifier
    Column("ident_value", CString, nullable=True),
    Index("ix_sp_reference_target", "res_type", "param", "target_id", "target_type", "res_id"),
    Index("ix_sp_reference_rev", "target_type", "target_id", "res_type", "param"),
    Index("ix_sp_reference_res", "res_type", "res_id"),
)

sp_date = Table(
    "sp_date", metadata, *_key(),
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Index("ix_sp_date_low", "res_type", "param", "low", "high"),
    Index("ix_sp_date_high", "res_type", "param", "high"),
    Index("ix_sp_date_res", "res_type", "res_id"),
)

sp_number = Table(
    "sp_number", metadata, *_key(),
    Column("value", Float, nullable=False),
    Index("ix_sp_number_value", "res_type", "param", "value"),
    Index("ix_sp_number_res", "res_type", "res_id"),
)

sp_quantity = Table(
    "sp_quantity", metadata, *_key(),
    Column("value", Float, nullable=False),
    Column("system", CString, nullable=False),
    Column("code", CString, nullable=False),  # the coded unit, else the unit text
    Index("ix_sp_quantity_value", "res_type", "param", "value"),
    Index("ix_sp_quantity_res", "res_type", "res_id"),
)

sp_uri = Table(
    "sp_uri", metadata, *_key(),
    Column("value", CString, nullable=False),
    Index("ix_sp_uri_value", "res_type", "param", "value"),
    Index("ix_sp_uri_res", "res_type", "res_id"),
)

# Patient compartment membership (CompartmentDefinition-patient): the shard key for patient data,
# and what compartment search, $everything and patient-confined access filters use.
sp_compartment = Table(
    "sp_compartment", metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Index("ix_sp_compartment_patient", "patient_id", "res_type", "res_id"),
    Index("ix_sp_compartment_res", "res_type", "res_id"),
)

# Full text (`_text`, `_content`): one row per resource, its words (service/search/fulltext.py); PostgreSQL
# searches it through GIN indexes on to_tsvector('simple', column), SQLite through the FTS5 table `sp_text_fts`
# over it (migration 0010).
sp_text = Table(
    "sp_text", metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=True),
    Column("narrative", Text, nullable=False),
    Column("content", Text, nullable=False),
    Index("ix_sp_text_res", "res_type", "res_id"),
)

INDEX_TABLES = {"token": sp_token, "string": sp_string, "reference": sp_reference, "date": sp_date,
                "number": sp_number, "quantity": sp_quantity, "uri": sp_uri}
ALL_TABLES = [*INDEX_TABLES.values(), sp_compartment, sp_text]
