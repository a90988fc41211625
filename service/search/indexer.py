"""Writing index rows: the write listener's work, also used by `search reindex` and the benchmark loader."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert
from sqlalchemy.engine import Connection

from service.db import Prepared
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
    for rtype, rid in keys:
        for table in TABLES.values():
            conn.execute(delete(table).where(table.c.res_type == rtype, table.c.res_id == rid))


def _insert_statement(table: Table) -> Prepared:
    return Prepared(lambda _dialect: insert(table).values({c.name: bindparam(c.name) for c in table.columns}))


# Each table's INSERT compiled once per dialect and run as one executemany on the driver (pipelined by psycopg):
# index rows are most of a write's statements, and SQLAlchemy's per-statement work was most of a write's time.
_INSERTS = {name: _insert_statement(t) for name, t in TABLES.items()}


def insert_rows(conn: Connection, batch: dict[str, list[dict[str, Any]]]) -> None:
    for name, rs in batch.items():
        if rs:
            cols = [c.name for c in TABLES[name].columns]
            _INSERTS[name].many(conn, [{c: r.get(c) for c in cols} for r in rs])


def merge(into: dict[str, list[dict[str, Any]]], more: dict[str, list[dict[str, Any]]]) -> None:
    for name, rs in more.items():
        into.setdefault(name, []).extend(rs)
