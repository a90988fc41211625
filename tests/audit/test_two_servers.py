"""Two server processes on one database, each sealing every second, under parallel reads, searches, creates and
refusals: every request leaves exactly one audit row (found by the X-Request-Id its answer carries), none is
lost or doubled, the servers seal it all by themselves within seconds, and `sharedcare audit verify` finds the log
intact. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from service.cli import main
from tests.audit.support import sql
from tests.running import running_server

OBSERVATION = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/pat-pat"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
               "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def _plan(nina: dict[str, str]) -> list[tuple[str, str, dict[str, str], int, str]]:
    """(method, path, headers, expected status, interaction) for each request."""
    kinds = [
        ("GET", "/fhir/Patient/pat-pat", nina, 200, "read"),
        ("GET", "/fhir/CarePlan?subject=Patient/pat-pat", nina, 200, "search-type"),
        ("POST", "/fhir/Observation", nina, 201, "create"),
        ("GET", "/fhir/Patient/pat-paula", nina, 404, "read"),  # not in her care: as if missing
        ("GET", "/fhir/Patient/no-such-person", nina, 404, "read"),
        ("GET", "/fhir/Patient/pat-pat", {}, 401, ""),  # no token
    ]
    return [kinds[i % len(kinds)] for i in range(180)]


def test_two_servers_audit_every_request_exactly_once_and_the_log_verifies(
        demo, settings, services, auth_headers, tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": settings.base_url,
           "SHAREDCARE_DEMO": "1", "SHAREDCARE_VAR_DIR": str(settings.var_dir),
           "SHAREDCARE_KEYS_DIR": str(settings.keys_dir), "SHAREDCARE_AUDIT_ANCHOR": str(tmp_path / "anchor.jsonl"),
           "SHAREDCARE_AUDIT_SEAL_SECONDS": "1"}
    before = sql(services, "SELECT count(*) FROM audit_log")[0][0]
    nina = auth_headers("nurse.nina")
    plan = _plan(nina)
    with running_server(tmp_path / "a", env, workers=1) as a, running_server(tmp_path / "b", env, workers=1) as b:
        with httpx.Client(timeout=60) as http:
            def send(i: int) -> tuple[int, str, httpx.Response]:
                method, path, headers, _, _ = plan[i]
                body = json.dumps(OBSERVATION).encode() if method == "POST" else None
                hdrs = {**headers, "Content-Type": "application/fhir+json"} if body else headers
                return i, (a, b)[i % 2], http.request(method, (a, b)[i % 2] + path, headers=hdrs, content=body)

            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(send, range(len(plan))))
        for i, _, resp in answers:
            assert resp.status_code == plan[i][3], (plan[i], resp.text)
        ids = [resp.headers["x-request-id"] for _, _, resp in answers]
        assert len(set(ids)) == len(ids)
        # both servers seal every second by themselves: wait for them to have sealed every row
        monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("SHAREDCARE_VAR_DIR", str(settings.var_dir))
        monkeypatch.setenv("SHAREDCARE_KEYS_DIR", str(settings.keys_dir))
        monkeypatch.setenv("SHAREDCARE_AUDIT_ANCHOR", str(tmp_path / "anchor.jsonl"))
        from service.config import get_settings

        get_settings.cache_clear()
        try:
            deadline = time.monotonic() + 30
            while True:
                capsys.readouterr()
                code = main(["audit", "verify", "--all"])
                out = capsys.readouterr().out
                if code != 0 or "; 0 newer rows not sealed yet" in out or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            get_settings.cache_clear()
    assert code == 0, out
    assert "audit log intact" in out and "; 0 newer rows not sealed yet" in out, out

    rows = sql(services, "SELECT request_id, interaction, status, target FROM audit_log WHERE kind = 'rest'")
    by_id: dict[str, list[Any]] = {}
    for r in rows:
        by_id.setdefault(r[0], []).append(r)
    for i, _, resp in answers:
        found = by_id.get(resp.headers["x-request-id"], [])
        assert len(found) == 1, (plan[i], found)  # not lost, not doubled
        _, interaction, status, target = found[0]
        assert status == plan[i][3]
        if plan[i][4]:
            assert interaction == plan[i][4]
        if status == 201:
            assert target == resp.headers["location"].split("/fhir/", 1)[1]
    assert sql(services, "SELECT count(*) FROM audit_log")[0][0] - before == len(plan)
