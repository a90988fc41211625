"""A restart in the middle of an export: the worker process (`sharedcare export work`) is killed with SIGKILL
mid-job, its lease runs out, a new worker process claims the job, starts it afresh and completes it, with every
resource exactly once. Both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from service.export import jobs
from tests.export.support import download, ids, kick_off, manifest, seed

SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")


def _env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_DATABASE_URL=settings.database_url, SHAREDCARE_VAR_DIR=str(settings.var_dir),
               SHAREDCARE_KEYS_DIR=str(settings.keys_dir), SHAREDCARE_BASE_URL=settings.base_url,
               SHAREDCARE_DEMO="1", SHAREDCARE_AUDIT_SEAL_SECONDS="0", SHAREDCARE_EXPORT_PAGE_SIZE="1",
               SHAREDCARE_EXPORT_FILE_RESOURCES="4", SHAREDCARE_EXPORT_LEASE_SECONDS="2",
               SHAREDCARE_EXPORT_POLL_SECONDS="0.1")
    return env


def test_an_export_survives_its_worker_being_killed(who, demo, settings, tmp_path):
    pop = seed(who["ada"], demo, n=6)
    url = kick_off(who["gp"], "/fhir/Patient/$export?_type=Patient,Observation")
    jid = url.rsplit("=", 1)[1]
    log = open(tmp_path / "worker1.log", "wb")  # noqa: SIM115
    first = subprocess.Popen([SHAREDCARE, "export", "work"], env=_env(settings), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            with demo.db.read() as conn:
                job = jobs.get(conn, jid)
            assert job is not None
            if job.state == "running" and job.exported >= 8:
                break
            assert job.state in ("queued", "running"), f"the job ended before the worker was killed: {job}"
            assert time.monotonic() < deadline, (tmp_path / "worker1.log").read_text()[-2000:]
            time.sleep(0.01)
        first.kill()  # SIGKILL: no chance to give the job back
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    with demo.db.read() as conn:
        job = jobs.get(conn, jid)
    assert job is not None and job.state == "running" and job.attempts == 1  # stuck with a dead worker
    r = who["gp"].get(url)
    assert r.status_code == 202 and "resources exported" in r.headers["X-Progress"]
    time.sleep(2.2)  # the dead worker's lease runs out
    second = subprocess.run([SHAREDCARE, "export", "work", "--once"], env=_env(settings), capture_output=True,
                            timeout=300, check=False)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    with demo.db.read() as conn:
        job = jobs.get(conn, jid)
    assert job is not None and job.state == "done" and job.attempts == 2
    found = download(who["gp"], manifest(who["gp"], url))
    observations = ids(found, "Observation")
    assert len(observations) == len(set(observations))  # nothing twice (the first run's partial files went)
    searched = who["gp"].get("/fhir/Observation?_count=1000").json()
    assert observations == sorted(e["resource"]["id"] for e in searched["entry"] if e["search"]["mode"] == "match")
    assert set(pop.in_care) <= set(ids(found, "Patient"))
