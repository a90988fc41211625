"""Owners: every resource and version carries the patients it belongs to (service.ownership) and its primary
owner, the shard key of patient data; a deleted resource's current row keeps what was deleted.

Existing rows are filled from the patient-compartment index; `sharedcare search reindex` recomputes them with
the full rule (Provenance and other resources about someone's data belong to that person).

Revision ID: 0006_owners
Revises: 0005_policy
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_owners"
down_revision = "0005_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("resource", "resource_version"):
        op.add_column(table, sa.Column("patient_id", sa.String(64), nullable=True))
        op.add_column(table, sa.Column("owners", sa.Text, nullable=True))
    op.create_index("ix_resource_patient", "resource", ["patient_id", "res_type"])
    op.create_index("ix_resource_version_patient", "resource_version", ["patient_id", "last_updated", "seq"])
    bind = op.get_bind()
    agg = "string_agg(c.patient_id, ' ' ORDER BY c.patient_id)" if bind.dialect.name == "postgresql" \
        else "group_concat(c.patient_id, ' ')"
    owners = (f"(SELECT {agg} FROM sp_compartment c WHERE c.res_type = {{t}}.res_type "
              "AND c.res_id = {t}.res_id)")
    first = ("(SELECT min(c.patient_id) FROM sp_compartment c WHERE c.res_type = {t}.res_type "
             "AND c.res_id = {t}.res_id)")
    for table in ("resource", "resource_version"):
        op.execute(f"UPDATE {table} SET owners = {owners.format(t=table)}, patient_id = {first.format(t=table)}")
    # a deleted resource's current row keeps the content of the version that was deleted
    op.execute("UPDATE resource SET content = (SELECT v.content FROM resource_version v WHERE v.res_type = "
               "resource.res_type AND v.res_id = resource.res_id AND v.version = resource.version - 1) "
               "WHERE deleted AND content IS NULL")


def downgrade() -> None:
    op.execute("UPDATE resource SET content = NULL WHERE deleted")
    op.drop_index("ix_resource_version_patient", table_name="resource_version")
    op.drop_index("ix_resource_patient", table_name="resource")
    for table in ("resource", "resource_version"):
        op.drop_column(table, "owners")
        op.drop_column(table, "patient_id")
