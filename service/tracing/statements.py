"""A span per SQL statement, as a child of the span current when it runs (a FHIR request, a policy decision, a
background job); statements with no span around them (pool checks, idle polling) make none.

Attached to every SQLAlchemy engine of the process, once, only when tracing is on (service.tracing.start). The
span is named `<operation> <table>` (`SELECT resource`) and carries `db.system.name`, `db.operation.name`,
`db.collection.name` and `db.query.text`: the statement as sent, whose values are placeholders; any quoted
literal in it is replaced by `'?'`. Never the parameters.
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

KEY = "sharedcare.trace.statement"
MAX_TEXT = 2000
_QUOTED = re.compile(r"'(?:[^']|'')*'")
_OPERATION = re.compile(r"\s*\(?\s*([A-Za-z]+)")
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_CHANGE = re.compile(r"\b(INSERT|UPDATE|DELETE)\s+(?:INTO\s+|FROM\s+)?\"?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_attached = False


def query_text(statement: str) -> str:
    """The statement without any quoted literal, at most MAX_TEXT characters."""
    return _QUOTED.sub("'?'", statement[: MAX_TEXT * 2])[:MAX_TEXT]


def name_of(statement: str) -> tuple[str, str | None]:
    """(operation, first table) of a statement: ("SELECT", "resource"); of a WITH, its first change if any
    (`WITH c AS (INSERT INTO resource ...) INSERT INTO resource_version ...`: ("INSERT", "resource"))."""
    op = _OPERATION.match(statement)
    operation = op.group(1).upper() if op else "SQL"
    head = statement[:4000]
    if operation == "WITH":
        if change := _CHANGE.search(head):
            return change.group(1).upper(), change.group(2)
        operation = "SELECT"
    table = _TABLE.search(head)
    return operation, table.group(1) if table else None


def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    parent = trace.get_current_span()
    if not parent.is_recording():
        return
    from service.tracing import tracer

    t = tracer()
    if t is None:
        return
    _end(conn.info, None)  # (one a failed statement left open on this connection)
    name, attributes = _described(statement, conn.dialect.name)
    if executemany:
        attributes = {**attributes, "db.operation.batch.size": len(parameters) if isinstance(parameters, list | tuple)
                      else 0}
    conn.info[KEY] = t.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


_described_memo: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}


def _described(statement: str, dialect: str) -> tuple[str, dict[str, Any]]:
    """A statement's span name and attributes, worked out once per statement text (the service's statements are
    compiled once and reused; the memo is emptied when it holds more than 2,000)."""
    key = (statement, dialect)
    found = _described_memo.get(key)
    if found is None:
        operation, table = name_of(statement)
        attributes: dict[str, Any] = {"db.system.name": dialect, "db.operation.name": operation,
                                      "db.query.text": query_text(statement)}
        if table:
            attributes["db.collection.name"] = table
        if len(_described_memo) >= 2000:
            _described_memo.clear()
        found = _described_memo[key] = (f"{operation} {table}" if table else operation, attributes)
    return found


def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    _end(conn.info, None)


def _error(ctx: Any) -> None:
    conn = ctx.connection
    if conn is not None:
        _end(conn.info, type(ctx.original_exception).__qualname__)


def _checkin(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        _end(record.info, None)


def _end(info: Any, error: str | None) -> None:
    span = info.pop(KEY, None)
    if span is None:
        return
    if error is not None:
        span.set_status(StatusCode.ERROR)
        span.set_attribute("error.type", error)
    span.end()


def attach() -> None:
    """Listen on every engine of this process (once)."""
    global _attached
    if _attached:
        return
    event.listen(Engine, "before_cursor_execute", _before)
    event.listen(Engine, "after_cursor_execute", _after)
    event.listen(Engine, "handle_error", _error)
    event.listen(Pool, "checkin", _checkin)
    _attached = True
