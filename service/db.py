"""Database engines and units of work, for SQLite (embedded default) and PostgreSQL (production).

`Database.write()` opens a transaction that takes the write lock up front on SQLite (BEGIN IMMEDIATE,
so two writers never deadlock on a lock upgrade); on PostgreSQL rows are locked with SELECT ... FOR
UPDATE where a write depends on what it read. `Database.read()` is a plain transaction.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from service import pooler
from service.config import Settings

if TYPE_CHECKING:
    from service.replica import Replica

PG_CONNECT = {"connect_timeout": 5}  # seconds: an unreachable server is an error soon, not a hung request
# The event loop's own statements (reads it runs itself, holding up every other request of its process meanwhile)
# are cancelled after this long; the request then runs again on a worker thread, with the full statement timeout.
LOOP_STATEMENT_SECONDS = 0.1
HELD = "sharedcare.held"  # conn.info key of a `Database.single` unit: its held write (service/held.py)


def make_engine(url: str, *, pool_size: int = 5, statement_timeout: float = 0.0, pooled: bool = False) -> Engine:
    """`statement_timeout` (seconds, 0: none): PostgreSQL cancels a statement running longer; on SQLite a unit of
    work running longer is interrupted (`Database` sets its deadline). Either is `timed_out`. `pooled`: the URL is a
    transaction-pooling pgbouncer (service/pooler.py)."""
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
            if statement_timeout > 0:
                key = id(dbapi_conn)
                dbapi_conn.set_progress_handler(lambda: _past_deadline(key), 20_000)

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    # No pre-ping round trip per checkout: a dead pooled connection surfaces as an invalidated-connection error,
    # which the pipeline retries once (reads) or answers 503 (writes).
    engine = _pg_engine(url, statement_timeout, pooled, pool_size=pool_size, max_overflow=15)
    if pooled and statement_timeout > 0:
        ms = int(statement_timeout * 1000)

        @event.listens_for(engine, "begin")
        def _local_timeout(conn: Connection) -> None:
            # behind a transaction pooler a session SET would stay on whichever server connection ran it: the role's
            # default bounds every statement; when it is not the configured limit, each write transaction sets its own
            # (one round trip, in the transaction it bounds)
            if not pooler.role_timeout_matches():
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
    return engine


def _pg_engine(url: Any, statement_timeout: float, pooled: bool = False, **kw: Any) -> Engine:
    engine = create_engine(url, pool_pre_ping=False, connect_args={**PG_CONNECT, **pooler.connect_args(pooled)}, **kw)
    if statement_timeout > 0:
        ms = int(statement_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _timeout(dbapi_conn: Any, _rec: Any) -> None:
            if pooled:  # (the role's default bounds autocommit statements; checked once per process)
                pooler.check_statement_timeout(dbapi_conn, ms)
                return
            # (a SET on the session, not a startup option; direct connections only: see service/pooler.py)
            autocommit = dbapi_conn.autocommit
            dbapi_conn.autocommit = True
            dbapi_conn.execute(f"SET statement_timeout = {ms}")
            dbapi_conn.autocommit = autocommit
    return engine


# SQLite: the deadline of the unit of work running on each connection (its progress handler looks it up)
_deadlines: dict[int, float] = {}


def _past_deadline(key: int) -> int:
    deadline = _deadlines.get(key)
    return 1 if deadline is not None and time.monotonic() > deadline else 0


def timed_out(exc: BaseException) -> bool:
    """A statement stopped by the statement timeout (PostgreSQL's query_canceled, SQLite's interrupt)."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == "57014" or "interrupted" in str(orig).lower()


class Database:
    def __init__(self, settings: Settings | None = None, *, url: str | None = None, engine: Engine | None = None):
        self.statement_timeout = settings.statement_timeout if settings is not None else 0.0
        # behind a transaction-pooling pgbouncer (SHAREDCARE_DATABASE_POOLER=transaction; service/pooler.py)
        self.pooled = pooler.pooler_mode(settings) == "transaction"
        if engine is None:
            assert url or settings
            engine = make_engine(url or settings.database_url,  # type: ignore[union-attr]
                                 statement_timeout=self.statement_timeout, pooled=self.pooled)
        self.engine = engine
        self.dialect = engine.dialect.name
        pg = self.dialect == "postgresql"
        self.pooled = self.pooled and pg
        # PostgreSQL reads use a pool of their own whose connections stay in autocommit (no BEGIN/COMMIT round
        # trips, and no isolation level to set and reset on every checkout).
        self._read_engine = _pg_engine(engine.url, self.statement_timeout, self.pooled, pool_size=10,
                                       max_overflow=10, isolation_level="AUTOCOMMIT") if pg else None
        # and the event loop's own connection, for the reads it runs itself (one at a time; never waiting for the
        # threads' pool); on a direct connection its statements have a bound of their own (`loop_bounded`)
        self._loop_engine = _pg_engine(engine.url, self._loop_timeout(), self.pooled, pool_size=1, max_overflow=1,
                                       isolation_level="AUTOCOMMIT") if pg else None
        # a streaming replica for searches and exports (service/replica.py) when configured, else None
        self.replica: Replica | None = self._replica(settings) if settings is not None else None

    def _loop_timeout(self) -> float:
        if self.pooled:  # (behind a transaction pooler every statement has the role's default: service/pooler.py)
            return self.statement_timeout
        return min(self.statement_timeout, LOOP_STATEMENT_SECONDS) if self.statement_timeout > 0 \
            else LOOP_STATEMENT_SECONDS

    @property
    def loop_bounded(self) -> bool:
        """Whether a read the event loop runs itself is stopped after LOOP_STATEMENT_SECONDS of database work (the
        loop's own connection, direct to the primary): then searches may run there too (service/api/fhir_http.py),
        and one that runs longer moves to a worker thread (service.api.pipeline.OffLoop)."""
        return self._loop_engine is not None and not self.pooled and self.replica is None

    def _replica(self, settings: Settings) -> Replica | None:
        from service.replica import Replica, configured

        url, max_lag = configured(settings)
        if url is None:
            return None

        def probe(target: Any, pooled: bool = False) -> Engine:
            return _pg_engine(target, 0.0, pooled, pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT")

        # (the primary's probe goes where the primary's pools go, a pgbouncer too; the replica is connected to
        # directly)
        return Replica(_pg_engine(url, self.statement_timeout, pool_size=10, max_overflow=10,
                                  isolation_level="AUTOCOMMIT"), probe(self.engine.url, self.pooled), probe(url), max_lag)

    @property
    def engines(self) -> list[Engine]:
        """Every engine (for listeners that must see every statement)."""
        replica = self.replica.engine if self.replica is not None else None
        return [e for e in (self.engine, self._read_engine, self._loop_engine, replica) if e is not None]

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.info["write"] = True
            self._arm(conn)
            try:
                with conn.begin():
                    yield conn
            finally:
                _release(conn)

    @property
    def single_writes(self) -> bool:
        """Whether `single` units are available: PostgreSQL, where every autocommit statement has the configured
        timeout (not behind a pooler whose role default differs: there writes set their own, in a transaction)."""
        return self._read_engine is not None and (not self.pooled or pooler.role_timeout_matches())

    @contextmanager
    def single(self) -> Iterator[Connection]:
        """(PostgreSQL, `single_writes`) a unit of work in autocommit whose one write the store holds back
        (service/held.py) for the audit to send with its row, as one statement: no BEGIN or COMMIT round trip."""
        from service.held import Holding

        assert self._read_engine is not None
        with self._read_engine.connect() as conn:
            conn.info[HELD] = Holding()
            try:
                yield conn
            finally:
                _release(conn)

    @contextmanager
    def read(self, on_loop: bool = False, replica: bool = False) -> Iterator[Connection]:
        """A read-only unit. On PostgreSQL in autocommit (each statement sees what is committed, as READ
        COMMITTED would, without BEGIN and COMMIT round trips); on SQLite a deferred transaction. `on_loop`: the
        HTTP server's event loop runs the read itself, on its own connection (PostgreSQL). `replica`: on the read
        replica, which the caller has found usable (service/replica.py: searches and exports only)."""
        engine = self._loop_engine if on_loop else self._read_engine
        if replica and self.replica is not None:
            engine = self.replica.engine
        if engine is not None:
            with engine.connect() as conn:
                try:
                    yield conn
                finally:
                    _release(conn)
            return
        with self.engine.connect() as conn:
            self._arm(conn)
            try:
                with conn.begin():
                    yield conn
            finally:
                _release(conn)

    def _arm(self, conn: Connection) -> None:
        """SQLite: this unit of work may run `statement_timeout` seconds (PostgreSQL times each statement)."""
        if self.statement_timeout > 0 and self.dialect == "sqlite":
            _deadlines[id(conn.connection.dbapi_connection)] = time.monotonic() + self.statement_timeout

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001  (any failure means "not ready"; /readyz reports it)
            return False

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()
        if self.replica is not None:
            self.replica.dispose()


def _release(conn: Connection) -> None:
    """What a unit of work left on its pooled connection goes (not on one the server dropped: it is discarded)."""
    if not conn.invalidated:
        conn.info.pop("write", None)
        conn.info.pop(HELD, None)
        conn.info.pop("sharedcare.ctx", None)
        if conn.dialect.name == "sqlite":
            _deadlines.pop(id(conn.connection.dbapi_connection), None)


def null_pool_engine(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


class Prepared:
    """A statement compiled once per dialect to its driver's own SQL and run on the DBAPI cursor, with no
    SQLAlchemy compilation or parameter processing per call: for the few statements on the hot path (a read
    with its policy facts, the audit insert). `build(dialect_name)` gives the SQLAlchemy statement. Driver
    errors surface as SQLAlchemy's DBAPIError, like every other statement's.

    On PostgreSQL the statement is kept in the server's own form (`$1`, a parameter used twice sent once) and
    run on psycopg's RawCursor with the values in order: no placeholder conversion or parameter mapping per
    call, which was a third of what a statement cost in Python."""

    def __init__(self, build: Any) -> None:
        self.build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def compiled(self, dialect: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """(the driver's SQL, the order of positional parameters or None for named ones, the statement's own
        literal parameters) for a SQLAlchemy dialect; on PostgreSQL the SQL is the server's (`$n`) and the
        parameters positional."""
        name = dialect.name
        found = self._compiled.get(name)
        if found is None:
            c = self.build(name).compile(dialect=dialect)
            positional = tuple(c.positiontup) if c.positiontup else None
            fixed = {k: v for k, v in c.params.items() if v is not None}  # the statement's own literals
            sql = str(c)
            if name == "postgresql" and positional is None:
                sql, positional = server_placeholders(sql)
            found = self._compiled[name] = (sql, positional, fixed)
        return found

    @staticmethod
    def args(order: tuple[str, ...] | None, fixed: dict[str, Any], params: dict[str, Any], pg: bool = False) -> Any:
        """The values for one execution: positional when `order` is given; on PostgreSQL (`pg`) a list of
        strings as an array literal (the server reads it as the array the statement expects; psycopg's list
        adaptation cost more than the rest of the statement's parameters together)."""
        merged = {**fixed, **params} if fixed else params
        if order is None:
            return merged
        if pg:
            return tuple([array_literal(v) if type(v) is list else v for v in map(merged.__getitem__, order)])
        return tuple([merged[k] for k in order])

    def _run(self, conn: Connection, many: bool, params: Any) -> list[tuple[Any, ...]]:
        sql, order, fixed = self.compiled(conn.dialect)
        pg = conn.dialect.name == "postgresql"
        args = [self.args(order, fixed, p, pg) for p in params] if many else self.args(order, fixed, params, pg)
        return run_on_cursor(conn, sql, args, many, raw=pg)

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(conn, False, params)

    def many(self, conn: Connection, params: list[dict[str, Any]]) -> None:
        self._run(conn, True, params)


def array_literal(values: list[Any]) -> Any:
    """PostgreSQL's text form of an array of strings (`{"a","b"}`), or the list itself when it holds anything
    else (psycopg adapts it)."""
    if not all(type(v) is str for v in values):
        return values
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


_PYFORMAT = re.compile(r"%%|%\((\w+)\)s")


def server_placeholders(sql: str) -> tuple[str, tuple[str, ...]]:
    """psycopg's `%(name)s` SQL as PostgreSQL's own (`$1`, the same number wherever a name recurs) and the
    names in number order (what psycopg does per execution, done once)."""
    names: dict[str, int] = {}

    def number(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "%"  # (an escaped percent sign)
        return f"${names.setdefault(m.group(1), len(names) + 1)}"

    return _PYFORMAT.sub(number, sql), tuple(names)


_TUPLES_OK = 2  # libpq's PGRES_TUPLES_OK (psycopg.pq.ExecStatus.TUPLES_OK): the statement returned rows


def run_on_cursor(conn: Connection, sql: str, args: Any, many: bool = False, raw: bool = False
                  ) -> list[tuple[Any, ...]]:
    """Driver SQL on the connection's DBAPI cursor: the rows (none for an executemany or an INSERT). Listeners
    still see the statement; driver errors surface as SQLAlchemy's DBAPIError, like every other statement's.
    `raw`: PostgreSQL SQL with `$n` placeholders and positional values, run on psycopg's RawCursor."""
    dbapi = conn.dialect.dbapi
    dbapi_conn = conn.connection.dbapi_connection
    cur = _raw_cursor(dbapi_conn) if raw else dbapi_conn.cursor()  # type: ignore[union-attr]
    if conn.dispatch.before_cursor_execute:  # listeners still see the statement (tests, tracing)
        conn.dispatch.before_cursor_execute(conn, cur, sql, args, None, many)
    try:
        if many:
            cur.executemany(sql, args)
            rows: list[tuple[Any, ...]] = []
        else:
            cur.execute(sql, args)
            # (an INSERT gives no rows; psycopg's result status is read without building cursor.description)
            if hasattr(cur, "pgresult"):
                returned = cur.pgresult is not None and cur.pgresult.status == _TUPLES_OK
            else:
                returned = cur.description is not None
            rows = cur.fetchall() if returned else []
        if conn.dispatch.after_cursor_execute:  # (a statement's span ends: service/tracing/statements.py)
            conn.dispatch.after_cursor_execute(conn, cur, sql, args, None, many)
        return rows
    except dbapi.Error as exc:  # type: ignore[union-attr]
        from sqlalchemy.exc import DBAPIError

        # A connection the server dropped is invalidated (the pool discards it, the pipeline retries a read),
        # as SQLAlchemy does for the statements it runs itself.
        dropped = conn.dialect.is_disconnect(exc, dbapi_conn, cur)
        if dropped:  # (the others pooled with it are likely gone too: recycled on their next checkout)
            conn.engine.pool._invalidate(conn.connection, exc)  # noqa: SLF001  (what SQLAlchemy itself does)
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=conn.dialect,  # type: ignore[union-attr]
                                  connection_invalidated=dropped) from exc
    finally:
        if not raw:
            cur.close()


def _raw_cursor(dbapi_conn: Any) -> Any:
    """The connection's own RawCursor, made once and kept open with it (a cursor's making was a tenth of what
    a short statement cost)."""
    cur = getattr(dbapi_conn, _CURSOR_ATTR, None)
    if cur is None or cur.closed:
        global _RawCursor
        if _RawCursor is None:
            from psycopg import RawCursor

            _RawCursor = RawCursor
        cur = _RawCursor(dbapi_conn)
        setattr(dbapi_conn, _CURSOR_ATTR, cur)
    return cur


_CURSOR_ATTR = "_sharedcare_raw_cursor"  # (an attribute of the psycopg connection: it lives and dies with it)


_RawCursor: Any = None


def select_rows(conn: Connection, stmt: Any) -> list[tuple[Any, ...]] | None:
    """PostgreSQL: a SELECT compiled through SQLAlchemy's statement cache (the engine's, as `conn.execute` uses)
    but run on the driver's cursor, without an execution context or a result object (most of what a search's
    page query cost in Python). None when the statement needs what only SQLAlchemy's execution does (IN lists
    expanded per execution, result type processing, another dialect): the caller runs it as usual."""
    dialect = conn.dialect
    if dialect.name != "postgresql":
        return None
    compiled, extracted, _, _ = stmt._compile_w_cache(  # noqa: SLF001  (what Connection.execute calls)
        dialect, compiled_cache=conn.engine._compiled_cache, column_keys=[])  # noqa: SLF001
    plain = getattr(compiled, "_sharedcare_plain", None)
    if plain is None:  # (worked out once per compiled statement: they are cached)
        plain = compiled._sharedcare_plain = not (  # type: ignore[attr-defined]  # noqa: SLF001
            compiled.post_compile_params or compiled.literal_execute_params
            or any(_processes_results(rc.type, dialect) for rc in compiled._result_columns))  # noqa: SLF001
    if not plain:
        return None
    params = compiled.construct_params(extracted_parameters=extracted)
    for key, process in compiled._bind_processors.items():  # noqa: SLF001  (as SQLAlchemy's execution does)
        if key in params:
            params[key] = process(params[key])
    native = getattr(compiled, "_sharedcare_native", None)
    if native is None:  # (PostgreSQL's own placeholders, worked out once per compiled statement, as Prepared does)
        native = compiled._sharedcare_native = server_placeholders(compiled.string)  # type: ignore[attr-defined]  # noqa: SLF001
    sql, order = native
    return run_on_cursor(conn, sql, Prepared.args(order, {}, params, pg=True), raw=True)


def _processes_results(type_: Any, dialect: Any) -> bool:
    """Whether SQLAlchemy converts this type's values as they are read (or would decide by the driver's column
    type, as for numbers: then yes)."""
    try:
        return type_._cached_result_processor(dialect, None) is not None  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return True


def insert_from_json(table: str, columns: Any, rows: str, *, within: str = "") -> str:
    """PostgreSQL: the SQL inserting many rows of `table` from a JSON array (`rows`: the SQL of the parameter),
    in the array's order: one statement and one parameter however many rows (a pipelined executemany converted
    and sent every row on its own). `within`: a CTE holding the document as jsonb (`within(d)`), when several
    inserts read parts of one: it is parsed once, and `rows` is a path into it (`within.d -> 'token'`)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    source = (f'{within}, jsonb_populate_recordset(NULL::"{table}", {rows})' if within
              else f'json_populate_recordset(NULL::"{table}", {rows})')
    return (f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {source} '
            "WITH ORDINALITY AS r ORDER BY r.ordinality")
