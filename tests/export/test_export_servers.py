"""Exports with real servers: two `sharedcare serve` processes (one with two workers) on one database, each
running the export worker thread. A kick-off on one is polled and downloaded on the other: the job and its files
live in the database, so any process answers for them. Both databases."""

from __future__ import annotations

import time

import httpx
import orjson

from tests.export.support import ASYNC, seed
from tests.running import running_server


def test_any_server_process_runs_polls_and_serves_an_export(who, demo, settings, auth_headers, tmp_path):
    pop = seed(who["ada"], demo, n=2)
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": settings.base_url,
           "SHAREDCARE_DEMO": "1", "SHAREDCARE_VAR_DIR": str(settings.var_dir),
           "SHAREDCARE_KEYS_DIR": str(settings.keys_dir), "SHAREDCARE_AUDIT_SEAL_SECONDS": "0",
           "SHAREDCARE_EXPORT_POLL_SECONDS": "0.2"}
    gp = auth_headers(client="gp-system")
    with running_server(tmp_path / "a", env, workers=2) as a, running_server(tmp_path / "b", env, workers=1) as b, \
            httpx.Client(timeout=60) as http:
        r = http.get(f"{a}/fhir/Patient/$export?_type=Patient,Observation", headers={**gp, **ASYNC})
        assert r.status_code == 202, r.text
        status = r.headers["content-location"].replace(settings.base_url, b)
        deadline = time.monotonic() + 120
        while (r := http.get(status, headers=gp)).status_code == 202:
            assert "x-progress" in r.headers
            assert time.monotonic() < deadline, "the servers' export workers did not finish the job"
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        output = r.json()["output"]
        got: dict[str, list[str]] = {}
        for f in output:
            served = http.get(f["url"].replace(settings.base_url, a), headers=gp)
            assert served.status_code == 200 and served.headers["content-type"].startswith("application/fhir+ndjson")
            got.setdefault(f["type"], []).extend(orjson.loads(x)["id"] for x in served.content.splitlines())
            assert http.get(f["url"].replace(settings.base_url, b)).status_code == 401
    assert set(pop.in_care) <= set(got["Patient"]) and not set(pop.not_in_care) & set(got["Patient"])
    assert len(got["Observation"]) == len(set(got["Observation"]))
