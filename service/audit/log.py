"""Writing the audit log: one compact row per access, never lost.

- A write's row goes into the write's own transaction (`insert`): it commits with the write, or neither does.
- A read's row goes through the group commit (service/audit/group_commit.py): everything waiting is written in
  one transaction (one commit for many requests), then the requests are released. Nothing is held between
  requests, and no response leaves before its row is durable. The HTTP server awaits it on its event loop
  (`acommit`, PostgreSQL); any other caller blocks on the committer thread (`commit`).
- When the database cannot take a row (it is down, read-only, or the disk is full), the row is appended to a
  local spool file (`<var>/audit-spool/`, fsync'd) and the request goes on being answered as it would; any
  process flushes spooled rows into the database once it answers again (`flush_spool`), skipping rows already
  there, so a failed request is audited too.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from service import held, pooler
from service.audit.group_commit import AsyncGroupCommitter, GroupCommitter
from service.audit.rows import COLUMNS, AuditRow
from service.audit.tables import audit_also, audit_log
from service.clock import now_us
from service.db import Prepared, insert_from_json

log = logging.getLogger("sharedcare.audit")



def _insert_statement(dialect: str) -> Any:
    from sqlalchemy import bindparam

    return insert(audit_log).values({name: bindparam(name) for name in VALUES})


VALUES = tuple(c for c in COLUMNS if c != "seq")
_INSERT = Prepared(_insert_statement)


def _batch_statement(_dialect: str) -> Any:
    """PostgreSQL: a group commit's rows in one statement from one JSON parameter, in the order given (a pipelined
    executemany converted and sent every row on its own: most of a group commit's CPU)."""
    from sqlalchemy import text

    return text(insert_from_json(audit_log.name, VALUES, "CAST(:rows AS json)"))


_BATCH = Prepared(_batch_statement)


def _stamp(rows: list[AuditRow]) -> None:
    """`recorded` is when the row goes in, just before its commit: so rows arrive in `seq` order by time, as the
    sealer expects (it takes rows MARGIN old), even when one waited in the group commit or for SQLite's lock."""
    now = now_us()
    for r in rows:
        r.recorded = now


def insert_rows(conn: Connection, rows: list[AuditRow]) -> None:
    """Insert rows in the caller's transaction (and their `audit_also` pointers)."""
    _stamp(rows)
    plain = [r for r in rows if not r.pointed]
    if len(plain) == 1:  # (a write's own row: one plain execute, not a pipelined executemany)
        _INSERT.rows(conn, plain[0].values())
    elif plain:
        _INSERT.many(conn, [r.values() for r in plain])
    for r in rows:
        if r.pointed:
            r.seq = conn.execute(insert(audit_log).returning(audit_log.c.seq), r.values()).scalar_one()
            conn.execute(insert(audit_also), [{"patient_id": p, "seq": r.seq} for p in dict.fromkeys(r.patients[1:])])


# A row joining a held write (service/held.py): written with it, over its `go`, in one statement
_HELD_ROW = ((f"a AS (INSERT INTO {audit_log.name} ({', '.join(VALUES)}) "
              f"SELECT {', '.join(':a_' + name for name in VALUES)} FROM go)"),)


def insert_with_held(conn: Connection, row: AuditRow) -> bool:
    """(A `Database.single` unit) the access's row, sent with the unit's held write as one statement (or alone when
    nothing was held); False when nothing was written: the write could not go on its own, or the row names several
    patients (it needs its `audit_also` pointers). The caller then writes both in a transaction."""
    if row.pointed:
        return False
    holding = held.holding(conn)
    pending = holding.held if holding is not None else None
    if pending is None:
        insert_rows(conn, [row])
        return True
    _stamp([row])
    return held.send_with(conn, pending, _HELD_ROW, {"a_" + k: v for k, v in row.values().items()})


def _returning_statement(dialect: str) -> Any:
    from sqlalchemy import bindparam

    return insert(audit_log).values({name: bindparam(name) for name in VALUES}).returning(audit_log.c.seq)


def _also_statement(dialect: str) -> Any:
    from sqlalchemy import bindparam

    return insert(audit_also).values(patient_id=bindparam("patient_id"), seq=bindparam("seq"))


_INSERT_RETURNING = Prepared(_returning_statement)
_INSERT_ALSO = Prepared(_also_statement)


async def ainsert_rows(conn: Any, dialect: Any, rows: list[AuditRow]) -> None:
    """`insert_rows` on a psycopg AsyncConnection (the caller's transaction): the statements in PostgreSQL's
    own form (`Prepared.compiled`), on a raw cursor."""
    from psycopg import AsyncRawCursor

    def statement(prepared: Prepared, values: dict[str, Any]) -> tuple[str, Any]:
        sql, order, fixed = prepared.compiled(dialect)
        return sql, Prepared.args(order, fixed, values, pg=True)

    _stamp(rows)
    async with AsyncRawCursor(conn) as cur:
        plain = [r.values() for r in rows if not r.pointed]
        if len(plain) == 1:
            await cur.execute(*statement(_INSERT, plain[0]))
        elif plain:
            await cur.execute(*statement(_BATCH, {"rows": orjson.dumps(plain).decode()}))
        for r in rows:
            if r.pointed:
                await cur.execute(*statement(_INSERT_RETURNING, r.values()))
                r.seq = (await cur.fetchone())[0]
                also = [statement(_INSERT_ALSO, {"patient_id": p, "seq": r.seq})
                        for p in dict.fromkeys(r.patients[1:])]
                await cur.executemany(also[0][0], [args for _, args in also])


class Spool:
    """Rows the database could not take, in local files until it can."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, rows: list[AuditRow]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"".join(orjson.dumps(r.values()) + b"\n" for r in rows))
            os.fsync(fd)
        finally:
            os.close(fd)
        log.error("audit: the database could not take %d audit row(s); spooled to %s", len(rows), path)

    def pending(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.jsonl"))

    def flush(self, db: Any) -> int:
        """Move spooled rows into the database (each file in one transaction); returns how many were added."""
        added = 0
        for path in self.pending():
            claimed = path.with_suffix(f".flushing-{os.getpid()}")
            try:
                os.rename(path, claimed)  # one process flushes a file
            except OSError:
                continue
            try:
                values = [orjson.loads(line) for line in claimed.read_bytes().splitlines() if line.strip()]
                with db.write() as conn:
                    for v in values:
                        seen = conn.execute(select(audit_log.c.seq).where(
                            audit_log.c.request_id == v["request_id"], audit_log.c.recorded == v["recorded"],
                            audit_log.c.interaction == v["interaction"]).limit(1)).first()
                        if seen is None or v["request_id"] is None:
                            conn.execute(insert(audit_log), v)
                            added += 1
                claimed.unlink()
            except (OperationalError, DBAPIError):
                os.rename(claimed, path)  # still unavailable: try again later
                raise
        if added:
            log.warning("audit: %d spooled audit row(s) written to the database", added)
        return added


def unavailable(exc: BaseException) -> bool:
    """A database error that means "cannot take writes now" (down, unreachable, read-only, disk full, locked),
    as opposed to one that says something is wrong with the schema or the statement."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(exc).lower()
    return any(s in text for s in (
        "connection", "could not connect", "server closed", "database is locked", "terminating", "read-only",
        "read only", "readonly", "no space", "disk full", "disk i/o", "database or disk is full",
        "cannot execute", "shutting down", "recovery", "timeout"))


class AuditLog:
    """The audit log of one process: in-transaction inserts, the group commit, the spool."""

    def __init__(self, db: Any, spool_dir: Path) -> None:
        self.db = db
        self.spool = Spool(spool_dir)
        self.committer = GroupCommitter(self._write)
        self._async: AsyncGroupCommitter | None = None
        if db.is_postgres:
            url = db.engine.url.set(drivername="postgresql")
            self._async = AsyncGroupCommitter(url.render_as_string(hide_password=False),
                                              lambda conn, rows: ainsert_rows(conn, db.engine.dialect, rows),
                                              self._spool_or_raise, pooler.connect_args(getattr(db, "pooled", False)))
        self._flushed_at = 0.0

    @property
    def awaitable(self) -> bool:
        """Whether an event loop can await the group commit (`acommit`) instead of blocking a thread on it."""
        return self._async is not None

    def insert(self, conn: Connection, rows: list[AuditRow]) -> None:
        insert_rows(conn, rows)

    def insert_with_held(self, conn: Connection, row: AuditRow) -> bool:
        return insert_with_held(conn, row)

    def commit(self, rows: list[AuditRow]) -> None:
        """Durable before this returns: the group commit, or the spool when the database cannot take them."""
        self.committer.submit(rows)
        self.maybe_flush()

    async def acommit(self, rows: list[AuditRow]) -> None:
        """`commit`, awaited on the event loop (only when `awaitable`)."""
        assert self._async is not None
        await self._async.commit(rows)

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()

    def _write(self, rows: list[AuditRow]) -> None:
        try:
            with self.db.write() as conn:
                insert_rows(conn, rows)
        except (OperationalError, DBAPIError) as exc:
            self._spool_or_raise(rows, exc)

    def _spool_or_raise(self, rows: list[AuditRow], exc: BaseException) -> None:
        if not unavailable(exc):
            raise exc
        self.spool.add(rows)

    def maybe_flush(self) -> None:
        """Now and then, move spooled rows into the database (cheap when there are none)."""
        now = time.monotonic()
        if now - self._flushed_at < 5.0:
            return
        self._flushed_at = now
        if self.spool.pending():
            try:
                self.spool.flush(self.db)
            except (OperationalError, DBAPIError):
                pass
