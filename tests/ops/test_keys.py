"""Signing keys and the server secret from configuration: outside demo mode nothing is generated behind the
operator's back (the server refuses to start, naming what to do); `sharedcare keys generate` makes them once;
`sharedcare keys rotate` publishes both keys, signs with the new one, and a token signed before the rotation is
accepted until the old key retires (the longest token lifetime later) and refused after. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from joserfc import jws

from service.cli import main
from service.config import get_settings
from tests.conftest import make_auth_headers
from tests.running import SHAREDCARE


def _env(settings, home: Path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_DATABASE_URL=settings.database_url, SHAREDCARE_VAR_DIR=str(home / "var"),
               SHAREDCARE_KEYS_DIR=str(home / "keys"), **extra)
    return env


def test_outside_demo_mode_keys_are_made_only_by_the_command(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(settings, tmp_path)
    refused = subprocess.run([SHAREDCARE, "serve", "--port", "9"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert refused.returncode == 3, refused.stderr
    assert "sharedcare keys generate" in refused.stderr and "SHAREDCARE_KEYS_DIR" in refused.stderr
    assert not (tmp_path / "keys" / "keys.json").exists()
    made = subprocess.run([SHAREDCARE, "keys", "generate"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert made.returncode == 0, made.stderr
    kid = made.stdout.strip()
    assert (tmp_path / "keys" / f"{kid}.pem").stat().st_mode & 0o777 == 0o600
    assert len((tmp_path / "keys" / "server-secret").read_bytes()) == 32
    again = subprocess.run([SHAREDCARE, "keys", "generate"], env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0 and again.stdout.strip() == kid  # (changes nothing that exists)
    # the secret from the environment instead: no file needed, too short refused
    secret_env = _env(settings, tmp_path / "other", SHAREDCARE_SECRET="short")
    bad = subprocess.run([SHAREDCARE, "keys", "generate"], env=secret_env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 3 and "SHAREDCARE_SECRET" in bad.stderr


def _kid(token: str) -> str:
    return str(jws.extract_compact(token.encode()).protected["kid"])


def test_a_token_signed_before_rotation_works_until_the_old_key_retires(settings, demo, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.bootstrap import build_services

    keys_dir = tmp_path / "keys"
    for key, value in _env(settings, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SHAREDCARE_DEMO", "1")
    get_settings.cache_clear()
    assert main(["keys", "generate"]) == 0
    mine = settings.model_copy(update={"keys_dir": keys_dir})
    services = build_services(mine, db=demo.db)
    http = TestClient(create_app(mine, services=services))
    try:
        before = make_auth_headers(services, "nurse.nina")
        old_kid = _kid(before["Authorization"].split()[1])
        assert http.get("/fhir/Patient/pat-pat", headers=before).status_code == 200

        assert main(["keys", "rotate"]) == 0
        after = make_auth_headers(services, "nurse.nina")
        new_kid = _kid(after["Authorization"].split()[1])
        assert new_kid != old_kid  # signs with the new key
        published = {k["kid"] for k in http.get("/auth/jwks").json()["keys"]}
        assert published == {old_kid, new_kid}  # both in the JWKS
        assert http.get("/fhir/Patient/pat-pat", headers=before).status_code == 200  # the old token still works
        assert http.get("/fhir/Patient/pat-pat", headers=after).status_code == 200

        store = services.auth.keys
        retention = store.retention
        assert retention >= settings.access_token_ttl
        store.clock = lambda: time.time() + retention - 30  # just before the old key retires
        assert http.get("/fhir/Patient/pat-pat", headers=before).status_code == 200
        store.clock = lambda: time.time() + retention + 5  # the longest token lifetime has passed
        refused = http.get("/fhir/Patient/pat-pat", headers=before)
        assert refused.status_code == 401, refused.text
        assert http.get("/fhir/Patient/pat-pat", headers=after).status_code == 200
        assert {k["kid"] for k in http.get("/auth/jwks").json()["keys"]} == {new_kid}
    finally:
        get_settings.cache_clear()  # (services.db is the session's: not disposed here)


@pytest.fixture(autouse=True)
def _fresh_settings():  # type: ignore[no-untyped-def]
    yield
    get_settings.cache_clear()
