"""Observation's combined and composite parameters that repeat other parameters' rows are searched over those
rows (service/search/derived.py) and get no index rows of their own: the rows they had are removed (never read
any more). `combo-code` is `code` or `component-code`; `code-value-quantity` is `code` and `value-quantity` of
the Observation itself; `combo-code-value-quantity` is `code-value-quantity` or `component-code-value-quantity`.

Downgrade leaves the rows missing: run `sharedcare search reindex --type Observation` after it.

Revision ID: 0011_derived_params
Revises: 0010_search_text
"""
from alembic import op

revision = "0011_derived_params"
down_revision = "0010_search_text"
branch_labels = None
depends_on = None

# table -> (parameter names, composite prefixes `<code>~`), as derived from the R4 definitions
GONE = {
    "sp_token": (("combo-code", "combo-data-absent-reason", "combo-value-concept", "combo-code:of-type",
                  "combo-data-absent-reason:of-type", "combo-value-concept:of-type"),
                 ("code-value-concept~", "code-value-date~", "code-value-quantity~", "combo-code-value-concept~",
                  "combo-code-value-quantity~")),
    "sp_quantity": (("combo-value-quantity",), ("code-value-quantity~", "combo-code-value-quantity~")),
    "sp_date": ((), ("code-value-date~",)),
}


def upgrade() -> None:
    for table, (names, prefixes) in GONE.items():
        conds = [f"param IN ({', '.join(repr(n) for n in names)})"] if names else []
        conds += [f"param LIKE '{p}%'" for p in prefixes]
        op.execute(f"DELETE FROM {table} WHERE res_type = 'Observation' AND ({' OR '.join(conds)})")


def downgrade() -> None:
    pass
