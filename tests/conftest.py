"""Fixtures: every storage and API test runs on SQLite and on PostgreSQL (a fresh database per run).

PostgreSQL: SHAREDCARE_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) is the
admin connection used to create `sc_test_<random>`, dropped at the end. SHAREDCARE_TEST_SKIP_POSTGRES=1
(never set in CI) skips the PostgreSQL half; otherwise an unreachable server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service.config import load_settings

PG_ADMIN_URL = os.environ.get("SHAREDCARE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SKIP_PG = os.environ.get("SHAREDCARE_TEST_SKIP_POSTGRES") == "1"
SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.exists():
    SHARED = Path("/work/shared")
DATA = SHARED / "data"
BACKENDS = ["sqlite"] + ([] if SKIP_PG else ["postgresql"])


def shared_data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    name = f"sc_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - the environment, not the code
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}. "
                    "Start it or set SHAREDCARE_TEST_SKIP_POSTGRES=1 by hand.")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def test_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest, test_var_dir: Path) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("pg_database")
    return f"sqlite:///{test_var_dir / 'test.db'}"


@pytest.fixture(scope="session")
def settings(database_url: str, test_var_dir: Path):  # type: ignore[no-untyped-def]
    from service.migrate import upgrade

    upgrade(database_url)
    base = load_settings()
    return replace(base, database_url=database_url, base_url="http://testserver", var_dir=test_var_dir,
                   keys_dir=test_var_dir / "keys", demo=True)


@pytest.fixture(scope="session")
def services(settings):  # type: ignore[no-untyped-def]
    from service.api.app import build_services

    svc = build_services(settings)
    yield svc
    svc.db.dispose()


def _clean(services) -> None:  # type: ignore[no-untyped-def]
    from service.schema import metadata

    names = [t.name for t in reversed(metadata.sorted_tables)]
    with services.db.write() as conn:
        if services.db.is_postgres:
            if names:
                conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
        else:
            for n in names:
                conn.execute(text(f'DELETE FROM "{n}"'))


@pytest.fixture
def clean_services(services):  # type: ignore[no-untyped-def]
    _clean(services)
    return services


@pytest.fixture
def app(clean_services, settings):  # type: ignore[no-untyped-def]
    from service.api.app import create_app

    return create_app(settings, services=clean_services)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as c:
        yield c
