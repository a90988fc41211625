"""Rate limits and login throttling kept in the database, so they hold across every worker process.

Fixed-window counters: one row per key (`login:ip:1.2.3.4`, `token:ip:...`, `login-fail:user:nina`), reset
when a new window starts. One upsert per hit (INSERT ... ON CONFLICT DO UPDATE ... RETURNING) on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import time

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from service.auth.tables import auth_rate_limit as T
from service.fhir.outcome import OperationOutcomeError


def hit(conn: Connection, key: str, window: int, now: float | None = None, amount: int = 1) -> int:
    """Count `amount` events for `key` in the current window; returns the count so far in the window."""
    start = int((now or time.time()) // window * window)
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(T).values(
        key=key, window_start=start, count=amount)
    stmt = ins.on_conflict_do_update(
        index_elements=[T.c.key],
        set_={"count": case((T.c.window_start == start, T.c.count + amount), else_=amount), "window_start": start},
    ).returning(T.c.count)
    return int(conn.execute(stmt).scalar_one())


def peek(conn: Connection, key: str, window: int, now: float | None = None) -> int:
    start = int((now or time.time()) // window * window)
    row = conn.execute(select(T.c.window_start, T.c.count).where(T.c.key == key)).first()
    return int(row.count) if row is not None and row.window_start == start else 0


def clear(conn: Connection, key: str) -> None:
    conn.execute(T.delete().where(T.c.key == key))


def too_many(what: str, retry_after: int) -> OperationOutcomeError:
    return OperationOutcomeError(429, "throttled", f"Too many {what}; try again in {retry_after} seconds",
                                 headers={"Retry-After": str(retry_after)})


def retry_after(window: int, now: float | None = None) -> int:
    t = now or time.time()
    return max(1, int(window - (t % window)))
