"""The group commit of reads' audit rows: many requests' rows in one transaction, each request waiting for its own.

Two forms, the same promise (no response leaves before its row is durable; nothing held between requests):
- `GroupCommitter`: one thread per process; a request's thread hands it rows and waits. Any caller, any database.
- `AsyncGroupCommitter` (PostgreSQL): on the HTTP server's event loop, with one asyncio connection of its own. A
  read's thread returns its rows with its response and the endpoint awaits them here before sending: no thread
  hand-off for the audit, and while one batch commits the next gathers.
Rows the database cannot take go to the spool (service/audit/log.py) and the requests are answered as usual.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg

from service.audit.rows import AuditRow
from service.background import ProcessThread

log = logging.getLogger("sharedcare.audit")

MAX_BATCH = 500
WAIT_SECONDS = 30.0


class GroupCommitter:
    """One thread per process that commits the rows reads hand it, many to a transaction."""

    def __init__(self, write: Callable[[list[AuditRow]], None]) -> None:
        self._write = write
        self._queue: queue.SimpleQueue[tuple[list[AuditRow], Future[None]]] = queue.SimpleQueue()
        self._worker = ProcessThread("audit-group-commit", self._run)

    def submit(self, rows: list[AuditRow]) -> None:
        """Block until the rows are durable (in the database, or spooled)."""
        fut: Future[None] = Future()
        self._queue.put((rows, fut))
        self._worker.ensure()
        fut.result(timeout=WAIT_SECONDS)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0][0])
            while size < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                size += len(item[0])
            try:
                self._write([r for rs, _ in batch for r in rs])
                error: BaseException | None = None
            except BaseException as exc:  # noqa: BLE001  (every waiting request must hear what happened)
                error = exc
            for _, fut in batch:
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)


class AsyncGroupCommitter:
    """The group commit on an event loop, over one psycopg AsyncConnection (opened on first use, reopened after a
    failure, bound to the loop that opened it).

    `insert(conn, rows)` is the coroutine that inserts rows on the connection; `spool(rows, exc)` takes rows the
    database could not take (it re-raises when the error is not one of availability)."""

    def __init__(self, conninfo: str, insert: Callable[[Any, list[AuditRow]], Any],
                 spool: Callable[[list[AuditRow], BaseException], None],
                 connect_args: dict[str, Any] | None = None) -> None:
        self._conninfo = conninfo
        self._connect_args = connect_args or {}  # (behind a transaction pooler: no prepared statements)
        self._insert = insert
        self._spool = spool
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[list[AuditRow], asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def commit(self, rows: list[AuditRow]) -> None:
        """Return once the rows are durable (in the database, or spooled); raise if neither could be done."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((rows, fut))
        assert self._wake is not None
        self._wake.set()
        await fut

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._conn is not None:  # (opened on another loop, which is gone: tests run one loop per client)
            self._conn.pgconn.finish()
            self._conn = None
        self._loop, self._pending, self._wake = loop, [], asyncio.Event()
        self._task = loop.create_task(self._run(), name="audit-group-commit")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                rows = [r for rs, _ in batch for r in rs]
                error: BaseException | None = None
                try:
                    await self._write(rows)
                except Exception as exc:  # noqa: BLE001  (every waiting request must hear what happened)
                    error = exc
                for _, fut in batch:
                    if fut.done():
                        continue
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)

    async def _write(self, rows: list[AuditRow]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, connect_timeout=5, autocommit=True,
                                                                 **self._connect_args)
            if not any(r.pointed for r in rows):  # one INSERT: a transaction of its own (one round trip)
                await self._insert(self._conn, rows)
            else:
                async with self._conn.transaction():
                    await self._insert(self._conn, rows)
        except psycopg.Error as exc:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self._conn = None
            self._spool(rows, exc)  # (re-raises unless the database is unavailable)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self._loop = None
