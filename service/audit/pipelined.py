"""Our own AuditEvents written to PostgreSQL in three round trips instead of one per statement.

The rows are exactly those of the ordinary path (`Recorder.store_event` through the store, the native index
and `chain.append`): the current row, the version row, the search index rows, the patient rows for the
access log, then the chain. psycopg's pipeline mode sends the inserts together (one round trip), then the
lane head is locked and read (one), then the chain row and the new head go together (one) -- the lane is
still locked last, so it is held only until commit. On a loopback connection this saves ~1 ms per audited
request; across a network, more.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy.engine import Connection

from service.audit import chain
from service.audit.tables import audit_chain as C
from service.audit.tables import audit_lane as L
from service.audit.tables import audit_patient as AP
from service.fhir.stored import Stored
from service.search.tables import INDEX_TABLES, sp_compartment
from service.storage.tables import resource as R
from service.storage.tables import resource_version as V


@cache
def _insert_sql(table_name: str, columns: tuple[str, ...]) -> str:
    return f'INSERT INTO {table_name} ({", ".join(columns)}) VALUES ({", ".join(["%s"] * len(columns))})'


def _rows(table: Any, rows: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]] | None:
    if not rows:
        return None
    cols = tuple(rows[0].keys())
    return _insert_sql(table.name, cols), [tuple(r[c] for c in cols) for r in rows]


def store(conn: Connection, stored: Stored, index_rows: dict[str, list[dict[str, Any]]], patients: list[str],
          key: str) -> None:
    """Write one AuditEvent already serialised in `stored` (version 1), its index rows and its chain link.
    Driver errors surface as SQLAlchemy's DBAPIError, like every other statement (the pipeline answers 503/500)."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    try:
        _store(conn, stored, index_rows, patients, key)
    except psycopg.Error as exc:
        raise DBAPIError("audit write (pipelined)", None, exc, connection_invalidated=False) from exc


def _store(conn: Connection, stored: Stored, index_rows: dict[str, list[dict[str, Any]]], patients: list[str],
           key: str) -> None:
    assert stored.content is not None
    text = stored.content.decode()
    raw = conn.connection.dbapi_connection
    owners = " ".join(dict.fromkeys(patients)) or None
    primary = patients[0] if patients else None
    statements: list[tuple[str, list[tuple[Any, ...]]]] = [
        (_insert_sql(R.name, ("res_type", "res_id", "version", "last_updated", "deleted", "content", "patient_id",
                              "owners")),
         [(stored.res_type, stored.res_id, 1, stored.last_updated, False, text, primary, owners)]),
        (_insert_sql(V.name, ("res_type", "res_id", "version", "last_updated", "method", "deleted", "content",
                              "patient_id", "owners")),
         [(stored.res_type, stored.res_id, 1, stored.last_updated, "POST", False, text, primary, owners)]),
    ]
    for name, rows in index_rows.items():
        table = sp_compartment if name == "compartment" else INDEX_TABLES[name]
        found = _rows(table, rows)
        if found:
            statements.append(found)
    if patients:
        statements.append((_insert_sql(AP.name, ("patient_id", "recorded", "event_id")),
                           [(p, stored.last_updated, stored.res_id) for p in dict.fromkeys(patients)]))
    with raw.pipeline(), raw.cursor() as cur:
        for sql, params in statements:
            if len(params) == 1:
                cur.execute(sql, params[0])
            else:
                cur.executemany(sql, params)
    lane = chain._txn_lane(conn, key)
    seq, prev = chain._lock_head(conn, lane, True)
    seq += 1
    digest = chain.event_hash(prev, lane, seq, stored.last_updated, stored.res_id, stored.content)
    with raw.pipeline(), raw.cursor() as cur:
        cur.execute(_insert_sql(C.name, ("lane", "seq", "event_id", "recorded", "prev_hash", "hash")),
                    (lane, seq, stored.res_id, stored.last_updated, prev, digest))
        cur.execute(f"UPDATE {L.name} SET seq = %s, head_hash = %s WHERE lane = %s", (seq, digest, lane))
