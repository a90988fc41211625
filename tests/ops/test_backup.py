"""Backup and restore as an operator runs them: `sharedcare backup PATH` while the service is up, `sharedcare
restore PATH` into a fresh database, and the restored database holds every resource, every version and the whole
audit log, which `sharedcare audit verify` finds intact against the seal key and the anchor file. A restore never
goes into a database that holds data. SQLite (online backup API) and PostgreSQL (pg_dump / pg_restore)."""

from __future__ import annotations

import os
import subprocess
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.conftest import PG_ADMIN_URL
from tests.running import SHAREDCARE

OBS = {"resourceType": "Observation", "status": "preliminary", "subject": {"reference": "Patient/pat-pat"},
       "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
       "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
TABLES = {"resource": "res_type, res_id", "resource_version": "seq", "audit_log": "seq", "audit_also": "patient_id, seq",
          "audit_seal": "id", "sp_token": "res_type, res_id, param, system, code"}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHAREDCARE, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def _rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY {order}"))]
                    for t, order in TABLES.items()}
    finally:
        engine.dispose()


def test_backup_then_restore_into_a_fresh_database_keeps_everything(demo, settings, client, tmp_path):  # type: ignore[no-untyped-def]
    made = client.post("/fhir/Observation", json=OBS)
    assert made.status_code == 201, made.text
    oid = made.json()["id"]
    for status in ("final", "amended"):
        body = {**made.json(), "status": status}
        assert client.put(f"/fhir/Observation/{oid}", json=body).status_code == 200
    gone = client.post("/fhir/Observation", json=OBS).json()["id"]
    assert client.delete(f"/fhir/Observation/{gone}").status_code == 204
    assert len(client.get(f"/fhir/Observation/{oid}/_history").json()["entry"]) == 3

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_DATABASE_URL=settings.database_url, SHAREDCARE_VAR_DIR=str(settings.var_dir),
               SHAREDCARE_KEYS_DIR=str(settings.keys_dir), SHAREDCARE_AUDIT_ANCHOR=str(tmp_path / "anchor.jsonl"))
    assert _run(["keys", "generate"], env).returncode == 0  # (the seal key, as an operator makes it once)
    sealed = _run(["audit", "seal"], env)
    assert sealed.returncode == 0, sealed.stderr
    assert client.get("/fhir/Patient/pat-pat").status_code == 200  # (and one row the seal has not reached yet)

    dump = tmp_path / "sharedcare.backup"
    done = _run(["backup", str(dump)], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(dump) and dump.stat().st_mode & 0o777 == 0o600
    assert _run(["backup", str(dump)], env).returncode == 2  # (never overwrites)

    if settings.is_sqlite:
        fresh = f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        admin = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        name = f"sc_restore_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        fresh = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        target = {**env, "SHAREDCARE_DATABASE_URL": fresh}
        restored = _run(["restore", str(dump)], target)
        assert restored.returncode == 0, restored.stderr
        before, after = _rows(settings.database_url), _rows(fresh)
        for table in TABLES:
            assert after[table] == before[table], table
        assert len(after["resource_version"]) >= 4 and len(after["audit_log"]) > 5 and after["audit_seal"]
        verify = _run(["audit", "verify", "--all"], target)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit log intact" in verify.stdout
        again = _run(["restore", str(dump)], target)  # (the target now holds data)
        assert again.returncode == 1, again.stderr
        assert "not empty" in again.stderr or "already holds data" in again.stderr
        # the restored database serves: a migrated schema at the newest revision
        upgrade = _run(["db", "upgrade"], target)
        assert upgrade.returncode == 0, upgrade.stderr
    finally:
        if not settings.is_sqlite:
            with admin.connect() as conn:
                conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            admin.dispose()
