"""Database engines and units of work, for SQLite (embedded default) and PostgreSQL (production).

`Database.write()` opens a transaction that takes the write lock up front on SQLite (BEGIN IMMEDIATE,
so two writers never deadlock on a lock upgrade); on PostgreSQL rows are locked with SELECT ... FOR
UPDATE where a write depends on what it read. `Database.read()` is a plain transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from service.config import Settings


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=20)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    # No pre-ping round trip per checkout: a dead pooled connection surfaces as an invalidated-connection error,
    # which the pipeline retries once (reads) or answers 503 (writes).
    return create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=False)


class Database:
    def __init__(self, settings: Settings | None = None, *, url: str | None = None, engine: Engine | None = None):
        if engine is None:
            assert url or settings
            engine = make_engine(url or settings.database_url)  # type: ignore[union-attr]
        self.engine = engine
        self.dialect = engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info["write"] = False
                conn.info.pop("sharedcare.ctx", None)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit. On PostgreSQL in autocommit (each statement sees what is committed, as READ
        COMMITTED would, without BEGIN and COMMIT round trips); on SQLite a deferred transaction."""
        with self.engine.connect() as conn:
            try:
                if self.is_postgres:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    yield conn
                else:
                    with conn.begin():
                        yield conn
            finally:
                conn.info.pop("sharedcare.ctx", None)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001  (any failure means "not ready"; /readyz reports it)
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def null_pool_engine(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)
