"""Fixtures: every storage and API test runs on SQLite and on PostgreSQL (a fresh database per run).

PostgreSQL: SHAREDCARE_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) is the
admin connection used to create `sc_test_<random>`, dropped at the end. SHAREDCARE_TEST_SKIP_POSTGRES=1
(never set in CI) skips the PostgreSQL half; otherwise an unreachable server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
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
    except SQLAlchemyError as exc:  # pragma: no cover - the environment, not the code
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
    # the tests seal the audit log themselves (sharedcare audit seal), never behind their back
    return base.model_copy(update={
        "database_url": database_url, "base_url": "http://testserver", "var_dir": test_var_dir,
        "keys_dir": test_var_dir / "keys", "demo": True, "audit_seal_seconds": 0,
        "api_rate_per_minute": 0,  # (tests/auth/test_api_rate_limit.py turns it on)
        "export_worker": False})  # (the export tests run the queue by hand; no idle polling in others' counts)


@pytest.fixture(scope="session")
def services(settings):  # type: ignore[no-untyped-def]
    from service.bootstrap import build_services

    svc = build_services(settings)
    yield svc
    svc.db.dispose()


def _clean(services) -> None:  # type: ignore[no-untyped-def]
    """Empty every table, the append-only audit tables too (their triggers set aside for the moment)."""
    from service.schema import metadata

    names = [t.name for t in reversed(metadata.sorted_tables)]
    with services.db.write() as conn:
        if services.db.is_postgres:
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # (the test database's superuser)
            if names:
                conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
        else:
            with without_audit_triggers(conn):
                for n in names:
                    conn.execute(text(f'DELETE FROM "{n}"'))
                conn.execute(text("DELETE FROM sqlite_sequence WHERE name = 'audit_log'"))


@contextmanager
def without_audit_triggers(conn):  # type: ignore[no-untyped-def]
    """SQLite: drop the append-only triggers for the block (as someone with write access to the file could),
    then put them back."""
    triggers = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                 "AND tbl_name LIKE 'audit_%'")).all()
    for name, _sql in triggers:
        conn.execute(text(f'DROP TRIGGER "{name}"'))
    try:
        yield
    finally:
        for _name, sql in triggers:
            conn.execute(text(sql))


@pytest.fixture
def clean_services(services):  # type: ignore[no-untyped-def]
    _clean(services)
    return services


@pytest.fixture
def demo(clean_services):  # type: ignore[no-untyped-def]
    """The demo records and the published forms (what `sharedcare demo load` writes) in a clean database.
    The demo users' accounts are not loaded: their tokens are issued directly (make_auth_headers) and
    verified without them, and hashing their passwords costs seconds per test (tests/auth loads them)."""
    from service.demo.loader import load_records
    from service.workflows.forms import ensure_questionnaires

    load_records(clean_services)
    ensure_questionnaires(clean_services)
    return clean_services


@pytest.fixture
def app(clean_services, settings):  # type: ignore[no-untyped-def]
    from service.api.app import create_app

    return create_app(settings, services=clean_services)


ADMIN_TEST_SCOPE = "system/*.cruds user/*.cruds"


def make_auth_headers(services, user: str | None = None, *, client: str | None = None,  # type: ignore[no-untyped-def]
                      scope: str | None = None, patient: str | None = None, purpose: str | None = None,
                      reason: str | None = None) -> dict[str, str]:
    """Headers with a signed access token for a demo user (`nurse.nina`, ...) or demo client (`gp-system`),
    or any user/client in the database; without either, admin.ada with full system scope.
    `scope` defaults to everything the identity may have; `patient` puts a patient in context."""
    from service.auth import demo as auth_demo
    from service.auth.issue import token_for_client, token_for_identity, token_for_user

    if client is not None:
        demo_client = next((c for c in auth_demo.clients() if c.client_id == client), None)
        if demo_client is not None:
            from service.auth.scopes import ScopeSet

            granted = demo_client.ceiling.grant(ScopeSet(ScopeSet.parse(scope or demo_client.scope).resource))
            token, _ = services.auth.tokens.access_token(scope=granted, client_id=client,
                                                                   client=demo_client, ttl=3600)
        else:
            token = token_for_client(services, client, scope=scope, ttl=3600)
    else:
        name = user or "admin.ada"
        demo_user = next((u for u in auth_demo.users() if u.username == name), None)
        if user is None:
            scope = scope or ADMIN_TEST_SCOPE
        if demo_user is not None:
            token = token_for_identity(services, demo_user, scope=scope, patient=patient, ttl=3600)
        else:
            token = token_for_user(services, name, scope=scope, patient=patient, ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}
    if purpose:
        headers["X-Purpose-Of-Use"] = purpose
    if reason:
        headers["X-Break-Glass-Reason"] = reason
    return headers


@pytest.fixture
def auth_headers(services):  # type: ignore[no-untyped-def]
    """auth_headers("nurse.nina"), auth_headers("patient.pat"), auth_headers(client="gp-system"),
    auth_headers("nurse.nina", patient="pat-pat", scope="patient/*.rs"): see make_auth_headers."""
    return lambda user=None, **kw: make_auth_headers(services, user, **kw)


@pytest.fixture
def client(app, clean_services):  # type: ignore[no-untyped-def]
    """A TestClient that sends admin.ada's token (full system scope) unless a request sets its own."""
    from fastapi.testclient import TestClient

    headers = make_auth_headers(clean_services) 
    with TestClient(app, base_url="http://testserver", headers=headers) as c:
        yield c


@pytest.fixture
def anon_client(app):  # type: ignore[no-untyped-def]
    """A TestClient that sends no credentials."""
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def lenient_references(services, monkeypatch):  # type: ignore[no-untyped-def]
    """SHAREDCARE_REFERENCES_LENIENT=1 for one test: dangling local references are stored as sent (a bulk load
    that arrives out of order, or examples that name resources outside the set)."""
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update={"references_lenient": True}))
    return services
