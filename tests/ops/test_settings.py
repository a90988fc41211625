"""Configuration as one typed object: through the real command line, every bad variable stops the command with exit
code 3 and one line naming it (never a pydantic report or a traceback), the variables once read by modules of their
own included; and the audit seal key, like the signing keys, is made only in demo mode or by `sharedcare keys
generate`: outside demo mode a missing key stops `serve`, `audit seal` and `audit verify`, naming
SHAREDCARE_AUDIT_KEY and the file. SQLite and PostgreSQL where a database is involved."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from service.config import Settings, load_settings
from tests.conftest import _clean
from tests.running import SHAREDCARE


def _env(home: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_VAR_DIR=str(home / "var"), SHAREDCARE_KEYS_DIR=str(home / "keys"),
               SHAREDCARE_AUDIT_ANCHOR=str(home / "anchor.jsonl"), **extra)
    if database_url:
        env["SHAREDCARE_DATABASE_URL"] = database_url
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHAREDCARE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_every_bad_variable_is_named_on_a_line_of_its_own(tmp_path: Path) -> None:
    bad = {"SHAREDCARE_MAX_BODY_BYTES": "lots", "SHAREDCARE_DEMO": "maybe", "SHAREDCARE_LOG_LEVEL": "loud",
           "SHAREDCARE_CARE_TEAM_ACCESS": "everyone", "SHAREDCARE_BREAK_GLASS_MINUTES": "0",
           "SHAREDCARE_AUDIT_SEAL_SECONDS": "-1", "SHAREDCARE_SUBSCRIPTION_MAX_ATTEMPTS": "0",
           "SHAREDCARE_REVOCATION_CHECK_SECONDS": "soon", "SHAREDCARE_SECRET": "tiny-secret",
           "SHAREDCARE_DATABASE_URL": "mysql://app:hunter2@db/care"}
    done = _run(["audit", "verify"], _env(tmp_path, **bad))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("configuration error: SHAREDCARE_") for line in lines), lines
    assert sorted(line.split()[2] for line in lines) == sorted(bad)  # each variable once, each on its own line
    said = dict(line.split(" ", 3)[2:] for line in lines)
    assert said["SHAREDCARE_MAX_BODY_BYTES"] == "must be an integer, got 'lots'"
    assert said["SHAREDCARE_BREAK_GLASS_MINUTES"] == "must be between 1 and 1440, got '0'"
    assert said["SHAREDCARE_CARE_TEAM_ACCESS"].startswith("must be 'member' or 'organisation'")
    assert "debug" in said["SHAREDCARE_LOG_LEVEL"] and "loud" in said["SHAREDCARE_LOG_LEVEL"]
    assert "Traceback" not in done.stderr and "pydantic" not in done.stderr and "validation error" not in done.stderr
    assert "tiny-secret" not in done.stderr and "hunter2" not in done.stderr  # secrets and passwords never echoed


def test_the_settings_are_one_frozen_typed_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in [k for k in os.environ if k.startswith("SHAREDCARE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SHAREDCARE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", "postgres://app@db/care")
    monkeypatch.setenv("SHAREDCARE_BREAK_GLASS_ROLES", "clinician, paramedic")
    monkeypatch.setenv("SHAREDCARE_RESTRICTED_LABELS", "")  # (an empty list: no label is restricted)
    monkeypatch.setenv("SHAREDCARE_MAX_BODY_BYTES", "")  # (empty: the default)
    monkeypatch.setenv("SHAREDCARE_REVOCATION_CHECK_SECONDS", "1.5")
    monkeypatch.setenv("SHAREDCARE_SECRET", "a-secret-of-enough-length")
    monkeypatch.setenv("SHAREDCARE_AUDIT_KEY", "")  # (empty: unset, as before)
    s = load_settings()
    assert s.audit_key is None
    assert s.database_url == "postgresql+psycopg://app@db/care" and s.keys_dir == tmp_path / "keys"
    assert s.break_glass_roles == {"clinician", "paramedic"} and s.restricted_labels == frozenset()
    assert s.max_body_bytes == 16 * 1024 * 1024 and s.revocation_seconds == 1.5
    assert "a-secret-of-enough-length" not in repr(s)
    with pytest.raises(ValueError):
        s.demo = True  # type: ignore[misc]
    variant = s.model_copy(update={"demo": True})
    assert variant.demo and not s.demo
    assert Settings(base_url="https://care.example.org/", demo=False).fhir_base == "https://care.example.org/fhir"


def _seal_key(home: Path) -> Path:
    return home / "keys" / "audit-seal-key"


def test_outside_demo_mode_the_audit_seal_key_is_made_only_by_the_command(
        settings, services, client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/fhir/Patient").status_code == 200  # (an audit row to seal)
    env = _env(tmp_path, settings.database_url)
    try:
        # no key: seal, verify and serve refuse, naming the variable and the file; nothing is made
        for args in (["audit", "seal"], ["audit", "verify"]):
            refused = _run(args, env)
            assert refused.returncode == 3, (args, refused.stderr)
            assert "SHAREDCARE_AUDIT_KEY" in refused.stderr and str(_seal_key(tmp_path)) in refused.stderr
            assert "Traceback" not in refused.stderr
        assert not _seal_key(tmp_path).exists()
        made = _run(["keys", "generate"], env)
        assert made.returncode == 0, made.stderr
        key = _seal_key(tmp_path).read_bytes()
        assert len(key) == 64 and _seal_key(tmp_path).stat().st_mode & 0o777 == 0o600
        assert f"audit seal key made ({_seal_key(tmp_path)})" in made.stderr
        again = _run(["keys", "generate"], env)
        assert again.returncode == 0 and "audit seal key ready" in again.stderr
        assert _seal_key(tmp_path).read_bytes() == key  # (never overwritten)
        sealed = _run(["audit", "seal"], env)
        assert sealed.returncode == 0 and "sealed 1 audit row" in sealed.stdout, sealed.stdout + sealed.stderr
        intact = _run(["audit", "verify", "--all"], env)
        assert intact.returncode == 0 and "audit log intact" in intact.stdout, intact.stdout + intact.stderr
        # the same key from the environment verifies the same seals; another key finds them broken
        from_env = _run(["audit", "verify", "--all"], {**env, "SHAREDCARE_AUDIT_KEY": key.decode()})
        assert from_env.returncode == 0, from_env.stdout + from_env.stderr
        other = _run(["audit", "verify", "--all"], {**env, "SHAREDCARE_AUDIT_KEY": "x" * 64})
        assert other.returncode == 1, other.stdout + other.stderr
        # the server refuses to start without it, after the signing key and the secret are there
        _seal_key(tmp_path).unlink()
        serve = _run(["serve", "--port", "9"], env)
        assert serve.returncode == 3 and "SHAREDCARE_AUDIT_KEY" in serve.stderr, serve.stderr
        assert not _seal_key(tmp_path).exists()
        # a file named by SHAREDCARE_AUDIT_KEY_FILE must exist; a key from the environment must be long enough
        missing = _run(["audit", "seal"], {**env, "SHAREDCARE_AUDIT_KEY_FILE": str(tmp_path / "nothing")})
        assert missing.returncode == 3 and "SHAREDCARE_AUDIT_KEY_FILE" in missing.stderr, missing.stderr
        short = _run(["audit", "seal"], {**env, "SHAREDCARE_AUDIT_KEY": "short-key"})
        assert short.returncode == 3 and "SHAREDCARE_AUDIT_KEY must be at least 16" in short.stderr
        assert "short-key" not in short.stderr
        # with the key in the environment, `keys generate` makes no file of its own
        named = _run(["keys", "generate"], {**env, "SHAREDCARE_AUDIT_KEY": key.decode()})
        assert named.returncode == 0 and not _seal_key(tmp_path).exists(), named.stderr
        # demo mode may make it
        demo = _run(["audit", "seal"], {**env, "SHAREDCARE_DEMO": "1"})
        assert demo.returncode == 0 and _seal_key(tmp_path).exists(), demo.stderr
    finally:
        _clean(services)  # (seals under this test's key: not left for the others)
