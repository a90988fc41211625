"""A worker killed with SIGKILL in the middle of transactions: nothing is half-written. Every transaction Bundle
is stored whole or not at all, every acknowledged one is there with its audit row, every resource's versions run
1..n with the current row at n, and the service goes on answering (uvicorn starts a new worker)."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from tests.faults.support import (
    FHIR,
    Load,
    bundles_whole,
    check_acknowledged,
    environment,
    headers_for,
    prepare,
    serving,
    stored,
)
from tests.running import free_port


def _updater(base: str, headers: dict[str, str], stop: threading.Event, acked: list[int]) -> None:
    """Update one Observation again and again (If-Match on the version it last saw): a chain of versions."""
    with httpx.Client(base_url=base, timeout=30) as c:
        obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/pat-pat"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
               "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
        r = c.post("/fhir/Observation", json=obs, headers={**headers, "Content-Type": FHIR})
        assert r.status_code == 201, r.text
        rid, version = r.json()["id"], 1
        while not stop.is_set():
            obs["valueQuantity"]["value"] = 70 + version % 20
            try:
                r = c.put(f"/fhir/Observation/{rid}", json={**obs, "id": rid},
                          headers={**headers, "Content-Type": FHIR, "If-Match": f'W/"{version}"'})
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if r.status_code == 200:
                version = int(r.json()["meta"]["versionId"])
                acked.append(version)
            elif r.status_code == 412:  # (our own update was written, its answer lost with the worker)
                version = int(c.get(f"/fhir/Observation/{rid}", headers=headers).json()["meta"]["versionId"])
            else:
                time.sleep(0.2)


def test_sigkill_of_a_worker_leaves_nothing_half_written(private_pg, pg_url, tmp_path):
    port = free_port()
    env = environment(pg_url, tmp_path, port)
    prepare(env)
    headers = headers_for(env, "nurse.nina", "gp-system")
    stop, versions = threading.Event(), []
    with serving(env, port, workers=2) as server:
        before = server.workers()
        assert len(before) == 2, before
        load = Load(server.base, headers).start(writers=4, readers=1)
        updater = threading.Thread(target=_updater, args=(server.base, headers["nurse.nina"], stop, versions),
                                   daemon=True)
        updater.start()
        try:
            time.sleep(4)
            os.kill(before[0], signal.SIGKILL)  # in the middle of whatever it was doing
            killed_at = time.monotonic()
            deadline = killed_at + 40
            while time.monotonic() < deadline and not (load.ok_after.get("write", 0) > killed_at + 2):
                time.sleep(0.5)
            time.sleep(2)
        finally:
            stop.set()
            load.stop()
            updater.join(60)
        deadline = time.monotonic() + 30
        while (after := server.workers()) != [] and (before[0] in after or len(after) < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        ready = httpx.get(f"{server.base}/fhir/Patient/pat-pat", headers=headers["nurse.nina"], timeout=30)

    assert before[0] not in after and len(after) == 2, (before, after)  # a new worker in its place
    assert ready.status_code == 200
    assert load.ok_after.get("write", 0) > killed_at, "no transaction succeeded after the kill"
    answered = [f for f in load.failed if f[2] != 0]
    assert all(f[2] in (503,) for f in answered), [(f[2], f[4][:200]) for f in answered][:5]
    check_acknowledged(pg_url, load)
    whole = bundles_whole(pg_url)
    assert all(n == 4 for n in whole.values()), {t: n for t, n in whole.items() if n != 4}
    assert versions, "the updater made no versions"

    from sqlalchemy import text

    engine = stored(pg_url)
    try:
        with engine.connect() as conn:
            broken = conn.execute(text(
                "SELECT r.res_type, r.res_id, r.version, count(v.seq), max(v.version), count(DISTINCT v.version) "
                "FROM resource r JOIN resource_version v ON v.res_type = r.res_type AND v.res_id = r.res_id "
                "GROUP BY r.res_type, r.res_id, r.version "
                "HAVING r.version <> max(v.version) OR count(v.seq) <> r.version "
                "OR count(DISTINCT v.version) <> r.version")).all()
            orphans = conn.execute(text(
                "SELECT count(*) FROM resource_version v WHERE NOT EXISTS (SELECT 1 FROM resource r "
                "WHERE r.res_type = v.res_type AND r.res_id = v.res_id)")).scalar()
    finally:
        engine.dispose()
    assert not broken, broken[:5]
    assert orphans == 0
