"""The HTTP benchmark's references (bench/http_bench.py), served by `uvicorn --workers 2`.

`bare`: returns the bytes of the file BENCH_REF_BODY (read once at start-up).
`minimal`: per request the database work of an audited read, on PostgreSQL (libpq DSN BENCH_REF_DSN):
the primary-key read of Patient/pat-pat, one INSERT into bench_audit (created at start-up), a COMMIT;
returns the stored content. Connections: psycopg_pool's AsyncConnectionPool when it is installed, else
BENCH_REF_CONNS plain async connections per worker handed out through a queue (default 8).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

try:
    from psycopg_pool import AsyncConnectionPool
except ImportError:  # not a dependency of the service: then a queue of plain connections
    AsyncConnectionPool = None

PATH = "/fhir/Patient/pat-pat"
MEDIA = "application/fhir+json"
READ = "SELECT content FROM resource WHERE res_type = 'Patient' AND res_id = 'pat-pat'"
AUDIT = "INSERT INTO bench_audit (who, what) VALUES (%s, %s)"
DDL = "CREATE TABLE IF NOT EXISTS bench_audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), " \
      "who text, what text)"
state: dict[str, Any] = {}


@asynccontextmanager
async def _read_body(app: Starlette) -> AsyncIterator[None]:
    state["body"] = Path(os.environ["BENCH_REF_BODY"]).read_bytes()
    yield


async def _bare(request: Request) -> Response:
    return Response(state["body"], media_type=MEDIA)


@asynccontextmanager
async def _connect(app: Starlette) -> AsyncIterator[None]:
    dsn, size = os.environ["BENCH_REF_DSN"], int(os.environ.get("BENCH_REF_CONNS", "8"))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:  # both workers start at once: serialise
        await conn.execute("SELECT pg_advisory_xact_lock(7310)")
        await conn.execute(DDL)
    if AsyncConnectionPool is not None:
        async with AsyncConnectionPool(dsn, min_size=size, max_size=size, open=False) as pool:
            state["pool"] = pool
            yield
        return
    queue: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    conns = [await psycopg.AsyncConnection.connect(dsn) for _ in range(size)]
    for conn in conns:
        queue.put_nowait(conn)
    state["queue"] = queue
    yield
    for conn in conns:
        await conn.close()


@asynccontextmanager
async def _connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    if "pool" in state:
        async with state["pool"].connection() as conn:
            yield conn
        return
    conn = await state["queue"].get()
    try:
        yield conn
    except BaseException:
        await conn.rollback()
        raise
    finally:
        state["queue"].put_nowait(conn)


async def _minimal(request: Request) -> Response:
    async with _connection() as conn:
        row = await (await conn.execute(READ)).fetchone()
        await conn.execute(AUDIT, ("nurse.nina", "Patient/pat-pat"))
        await conn.commit()
    return Response(row[0] if row else b"", media_type=MEDIA)


bare = Starlette(routes=[Route(PATH, _bare)], lifespan=_read_body)
minimal = Starlette(routes=[Route(PATH, _minimal)], lifespan=_connect)
