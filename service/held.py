"""A write held back to be sent with its audit row, as one statement (PostgreSQL, `Database.single`).

A plain create does one write: the record with its index rows. In a `Database.single` unit (autocommit) the
store does not send it but holds it here, as data-modifying CTEs that write only when `go` has its row; the
audit then adds the access's row as one more CTE over `go` and sends the lot (`send_with`): one statement, a
transaction of its own, so a create costs two round trips (the policy's facts, and this) instead of five
(BEGIN, the facts, the record, the audit row, COMMIT).

When `go` finds something in the way (an active subscription the new resource may match: its delivery must be
queued in the same transaction), nothing is written and the statement's rows say so; the caller then sends the
write as usual (`Held.send`), with whatever else must go with it, in a transaction on the same connection
(`transaction_on`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from service.db import HELD, Prepared


@dataclass(frozen=True)
class Held:
    """A unit's one write, not sent yet."""

    ctes: tuple[str, ...]  # `go AS (...)` first, then the write's CTEs, each writing only `FROM go`
    tail: str  # the statement's result: rows when `go` had none (then nothing was written)
    params: dict[str, Any]
    send: Callable[[Connection], None]  # the write as usual, with its listeners (in the caller's transaction)


class Holding:
    """What a `Database.single` unit's connection carries: the one write held, if any."""

    def __init__(self) -> None:
        self.held: Held | None = None

    def hold(self, held: Held) -> None:
        if self.held is not None:  # (a unit of work that writes twice is not a single one: never held)
            raise RuntimeError("a second write in a single-statement unit of work")
        self.held = held


def holding(conn: Connection) -> Holding | None:
    found: Holding | None = conn.info.get(HELD)
    return found


# (a handful: one per listener set and audit row shape; keyed by the parts, whose string hashes are kept, not by
# the joined SQL, which would be built and hashed anew for every create)
_STATEMENTS: dict[tuple[tuple[str, ...], str, tuple[str, ...]], Prepared] = {}


def send_with(conn: Connection, held: Held, ctes: tuple[str, ...], params: dict[str, Any]) -> bool:
    """The held write with more CTEs over `go` (the audit row), as one statement; False when nothing was written."""
    key = (held.ctes, held.tail, ctes)
    prepared = _STATEMENTS.get(key)
    if prepared is None:
        sql = "WITH " + ", ".join((*held.ctes, *ctes)) + " " + held.tail
        prepared = _STATEMENTS[key] = Prepared(lambda _dialect: text(sql))
    return not prepared.rows(conn, {**held.params, **params})


@contextmanager
def transaction_on(conn: Connection) -> Iterator[None]:
    """A transaction on a `Database.single` unit's autocommit connection, beginning with what it held (sent as
    usual; from then on nothing is held): committed at the end, rolled back when the block raises."""
    pending = conn.info.pop(HELD, None)
    conn.exec_driver_sql("BEGIN")
    try:
        if pending is not None and pending.held is not None:
            pending.held.send(conn)
        yield
    except BaseException:
        if not conn.invalidated:
            conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")
