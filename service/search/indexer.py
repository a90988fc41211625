"""Writing index rows: the write listener's work, also used by `search reindex` and the benchmark loader."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, delete, insert, text
from sqlalchemy.engine import Connection

from service.db import Prepared, insert_from_json
from service.search.extract import extract
from service.search.fulltext import text_row
from service.search.tables import INDEX_TABLES, sp_compartment, sp_text

TABLES = {**INDEX_TABLES, "compartment": sp_compartment, "text": sp_text}


def index_rows(rtype: str, rid: str, resource: dict[str, Any], base: str, owners: Iterable[str]
               ) -> dict[str, list[dict[str, Any]]]:
    """All rows to insert for one resource, by table name (deduplicated), including 'compartment': one row per
    owner (service.ownership), which is what compartment searches, `$everything` and the policy read."""
    rows = extract(resource, base)
    owners = tuple(owners)
    primary = owners[0] if owners else None
    out: dict[str, list[dict[str, Any]]] = {}
    for name, rs in rows.items():
        seen: set[tuple[Any, ...]] = set()
        uniq = []
        for r in rs:
            k = tuple(r.values())
            if k not in seen:
                seen.add(k)
                uniq.append({"res_type": rtype, "res_id": rid, "patient_id": primary, **r})
        out[name] = uniq
    out["compartment"] = [{"res_type": rtype, "res_id": rid, "patient_id": p} for p in dict.fromkeys(owners)]
    text = text_row(resource)
    out["text"] = [{"res_type": rtype, "res_id": rid, "patient_id": primary, **text}] if text else []
    return out


def clear(conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
    pg = conn.dialect.name == "postgresql"
    for rtype, rid in keys:
        if pg:  # one statement for every table
            _PG_CLEAR.rows(conn, {"rtype": rtype, "rid": rid})
            continue
        for table in TABLES.values():
            conn.execute(delete(table).where(table.c.res_type == rtype, table.c.res_id == rid))


def _insert_statement(table: Table) -> Prepared:
    return Prepared(lambda _dialect: insert(table).values({c.name: bindparam(c.name) for c in table.columns}))


# Each table's INSERT compiled once per dialect and run as one executemany on the driver (pipelined by psycopg):
# index rows are most of a write's statements, and SQLAlchemy's per-statement work was most of a write's time.
_INSERTS = {name: _insert_statement(t) for name, t in TABLES.items()}


def _pg_insert_all() -> Prepared:
    """PostgreSQL: every index table's rows in one statement, from one JSON parameter (a data-modifying CTE per
    table inserting `json_populate_recordset` of its part): a write's index rows cost one round trip and one
    parameter, however many rows and tables."""
    return Prepared(lambda _dialect: text("WITH " + ", ".join(_pg_ctes()) + " SELECT 1"))


def _pg_ctes(guarded: bool = False) -> list[str]:
    """The rows document parsed once (jsonb: each table's part is a lookup), then an insert per table. `guarded`:
    none when the CTE `go` has no row (service/held.py)."""
    return [f"rows_doc AS (SELECT CAST(:rows AS jsonb) AS d{' FROM go' if guarded else ''})"] + [
        f"i_{name} AS ({insert_from_json(t.name, [c.name for c in t.columns], f'rows_doc.d -> {name!r}', within='rows_doc')})"
        for name, t in TABLES.items()]


class FirstIndexRows:
    """PostgreSQL: a new resource's index rows written in its own insert statement (service.storage.store's
    FirstVersionRows): the CTEs of `_pg_insert_all` over the same JSON parameter."""

    def __init__(self, listener: Any, base: str) -> None:
        self.listener = listener
        self.base = base

    def ctes(self, guarded: bool = False) -> list[str]:
        return _pg_ctes(guarded)

    def rows(self, stored: Any, resource: dict[str, Any]) -> str:
        return rows_document(index_rows(stored.res_type, stored.res_id, resource, self.base, stored.owners))


def _pg_clear_all() -> Prepared:
    ctes = [f'd_{name} AS (DELETE FROM "{t.name}" WHERE res_type = :rtype AND res_id = :rid)'
            for name, t in TABLES.items()]
    return Prepared(lambda _dialect: text("WITH " + ", ".join(ctes) + " SELECT 1"))


_PG_INSERT = _pg_insert_all()
_PG_CLEAR = _pg_clear_all()


def rows_document(batch: dict[str, list[dict[str, Any]]]) -> str:
    """The JSON parameter of the index inserts (`_pg_ctes`): each table's rows under its name."""
    return orjson.dumps(batch, default=_json_default).decode()


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # (PostgreSQL reads the number from its text, exactly as written)
    raise TypeError(f"cannot index a {type(value).__name__}")


def insert_rows(conn: Connection, batch: dict[str, list[dict[str, Any]]]) -> None:
    if conn.dialect.name == "postgresql":
        if any(batch.values()):
            _PG_INSERT.rows(conn, {"rows": rows_document(batch)})
        return
    for name, rs in batch.items():
        if rs:
            cols = [c.name for c in TABLES[name].columns]
            _INSERTS[name].many(conn, [{c: r.get(c) for c in cols} for r in rs])


def merge(into: dict[str, list[dict[str, Any]]], more: dict[str, list[dict[str, Any]]]) -> None:
    for name, rs in more.items():
        into.setdefault(name, []).extend(rs)
