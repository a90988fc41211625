"""A full disk under the database (SQLite on a small tmpfs filled to the last byte; needs root to mount it, so
elsewhere the test is skipped saying so): writes are refused with 503, an OperationOutcome and Retry-After, reads
go on, nothing written before is lost or damaged (integrity_check), and once there is room again writes work and
the audit rows spooled meanwhile are flushed.

PostgreSQL on a full disk is not simulated here: it cannot extend its WAL and stops (PANIC), which the service
sees as a database that is down (tests/faults/test_postgres_restart.py)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.support import FHIR, environment, headers_for, is_outcome, prepare, serving, stored
from tests.running import free_port

OBS = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/pat-pat"},
       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "note": [{"text": "x" * 2000}]}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    if os.write(fd, chunk) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_full_disk_refuses_writes_with_503_and_loses_nothing(small_disk, tmp_path):
    port = free_port()
    url = f"sqlite:///{small_disk / 'sc.db'}"
    env = environment(url, tmp_path, port)  # (the spool and keys are on the ordinary disk, under tmp_path/var)
    prepare(env)
    h = headers_for(env, "nurse.nina")["nurse.nina"]
    with serving(env, port, workers=1) as server, httpx.Client(base_url=server.base, timeout=30) as c:
        before = c.post("/fhir/Observation", json=OBS, headers={**h, "Content-Type": FHIR})
        assert before.status_code == 201, before.text
        filler = _fill(small_disk)
        refused = []
        for _ in range(5):  # (SQLite may still find room in a free page or two: until it cannot)
            r = c.post("/fhir/Observation", json=OBS, headers={**h, "Content-Type": FHIR})
            if r.status_code != 201:
                refused.append(r)
                break
        assert refused, "the disk never filled"
        r = refused[0]
        assert r.status_code == 503 and is_outcome(r.content), r.text
        assert r.headers["retry-after"].isdigit() and "unavailable" in r.json()["issue"][0]["diagnostics"]
        read = c.get(f"/fhir/Observation/{before.json()['id']}", headers=h)
        assert read.status_code == 200, read.text
        filler.unlink()
        deadline = time.monotonic() + 20
        while True:
            after = c.post("/fhir/Observation", json=OBS, headers={**h, "Content-Type": FHIR})
            if after.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert after.status_code == 201, after.text
        from sqlalchemy import bindparam, text

        ids = [r.headers["x-request-id"], read.headers["x-request-id"], before.headers["x-request-id"]]
        engine = stored(url)
        try:
            deadline = time.monotonic() + 20
            while True:
                with engine.connect() as conn:
                    got = {x for (x,) in conn.execute(text("SELECT request_id FROM audit_log WHERE request_id IN :i")
                                                      .bindparams(bindparam("i", expanding=True)), {"i": ids})}
                if len(got) == 3 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                for rid in (before.json()["id"], after.json()["id"]):
                    assert conn.execute(text("SELECT count(*) FROM resource WHERE res_id = :i"), {"i": rid}).scalar() == 1
        finally:
            engine.dispose()
        assert got == set(ids)  # the refused write and the read while full, from the spool
