"""Search indexes: one table per search-parameter type, and patient compartment membership.

Revision ID: 0002_search
Revises: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_search"
down_revision = "0001_core"
branch_labels = None
depends_on = None

CString = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")

# table -> (value columns, {index name: columns})
TABLES = {
    "sp_token": ([("system", CString, False), ("code", CString, False), ("text", CString, True)],
                 {"ix_sp_token_code": ["res_type", "param", "code", "system", "res_id"]}),
    "sp_string": ([("value", CString, False), ("exact", CString, False)],
                  {"ix_sp_string_value": ["res_type", "param", "value", "res_id"]}),
    "sp_reference": ([("target_type", sa.String(64), True), ("target_id", sa.String(64), True),
                      ("url", CString, True), ("ident_system", CString, True), ("ident_value", CString, True)],
                     {"ix_sp_reference_target": ["res_type", "param", "target_id", "target_type", "res_id"],
                      "ix_sp_reference_rev": ["target_type", "target_id", "res_type", "param"]}),
    "sp_date": ([("low", sa.BigInteger, False), ("high", sa.BigInteger, False)],
                {"ix_sp_date_low": ["res_type", "param", "low", "high"],
                 "ix_sp_date_high": ["res_type", "param", "high"]}),
    "sp_number": ([("value", sa.Float, False)], {"ix_sp_number_value": ["res_type", "param", "value"]}),
    "sp_quantity": ([("value", sa.Float, False), ("system", CString, False), ("code", CString, False)],
                    {"ix_sp_quantity_value": ["res_type", "param", "value"]}),
    "sp_uri": ([("value", CString, False)], {"ix_sp_uri_value": ["res_type", "param", "value"]}),
}


def upgrade() -> None:
    for name, (cols, indexes) in TABLES.items():
        op.create_table(
            name,
            sa.Column("res_type", sa.String(64), nullable=False),
            sa.Column("res_id", sa.String(64), nullable=False),
            sa.Column("param", sa.String(64), nullable=False),
            *[sa.Column(c, t, nullable=n) for c, t, n in cols],
        )
        for ix, ixcols in indexes.items():
            op.create_index(ix, name, ixcols)
        op.create_index(f"ix_{name}_res", name, ["res_type", "res_id"])
    op.create_table(
        "sp_compartment",
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_sp_compartment_patient", "sp_compartment", ["patient_id", "res_type", "res_id"])
    op.create_index("ix_sp_compartment_res", "sp_compartment", ["res_type", "res_id"])


def downgrade() -> None:
    op.drop_table("sp_compartment")
    for name in reversed(list(TABLES)):
        op.drop_table(name)
