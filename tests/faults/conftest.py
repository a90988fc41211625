"""Fault tests break their own database: a private PostgreSQL instance per module (initdb + pg_ctl on a free port
in a temporary folder; never the machine's shared server), or an SQLite file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.load.private_pg import PrivatePostgres, available


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    why = available()
    if why:
        pytest.skip(f"no private PostgreSQL instance can be made here: {why}")
    with PrivatePostgres() as pg:
        yield pg


@pytest.fixture
def pg_url(private_pg: PrivatePostgres) -> str:
    """A fresh database on the private instance (which is started if a previous test left it stopped)."""
    import uuid

    if private_pg.sql_or_none("SELECT 1") is None:
        private_pg.start()
    name = f"faults_{uuid.uuid4().hex[:8]}"
    private_pg.sql(f'CREATE DATABASE "{name}"')
    return private_pg.url.rsplit("/", 1)[0] + f"/{name}"
