"""A small search runs on the server's event loop, with no hand-off to a worker thread (service/api/fhir_http.py),
but a slow one does not hold up the rest: after LOOP_STATEMENT_SECONDS of database work it is cancelled there and
runs again on a worker thread, with the full statement timeout. Its answer is the one it would have had, with one
audit row; meanwhile the same single worker answers everyone else. (PostgreSQL: the loop's own bound.)"""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
from sqlalchemy import text

from service.db import LOOP_STATEMENT_SECONDS
from tests.faults.support import environment, headers_for, prepare, serving, stored
from tests.running import free_port

HELD_SECONDS = 3.0


def test_a_search_held_up_in_the_database_moves_off_the_loop_and_answers_in_full(private_pg, pg_url, tmp_path):
    port = free_port()
    env = environment(pg_url, tmp_path, port)
    prepare(env)
    nina = headers_for(env, "nurse.nina")["nurse.nina"]
    search = "/fhir/CarePlan?subject=Patient/pat-pat"
    with serving(env, port, workers=1) as server, httpx.Client(base_url=server.base, timeout=60) as c:
        quick = c.get(search, headers=nina)
        assert quick.status_code == 200, quick.text
        expected = sorted(e["resource"]["id"] for e in quick.json()["entry"])
        assert expected  # (Pat has a care plan)
        out: dict[str, object] = {}
        # another session holds the care relationships: the search's access facts wait for it (as for a lock held
        # by a long migration); the loop's statement is cancelled, the worker thread's waits its turn
        with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=False) as blocker:
            blocker.execute("LOCK TABLE care_relationship IN ACCESS EXCLUSIVE MODE")

            def run() -> None:
                t0 = time.perf_counter()
                out["resp"] = c.get(search, headers={**nina, "X-Request-Id": "slow-search-0001"})
                out["took"] = time.perf_counter() - t0

            t = threading.Thread(target=run)
            t.start()
            time.sleep(LOOP_STATEMENT_SECONDS * 4)
            others = []
            for _ in range(10):  # meanwhile the loop answers everyone else at once
                t0 = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                others.append(time.perf_counter() - t0)
            assert t.is_alive()  # (still waiting for the lock, now on a worker thread)
            time.sleep(HELD_SECONDS - LOOP_STATEMENT_SECONDS * 4)
            blocker.rollback()
        t.join(60)
    resp = out["resp"]
    assert isinstance(resp, httpx.Response)
    assert resp.status_code == 200, resp.text
    assert sorted(e["resource"]["id"] for e in resp.json()["entry"]) == expected
    assert float(out["took"]) >= HELD_SECONDS - 0.5  # type: ignore[arg-type]
    assert max(others) < 1.0, others
    engine = stored(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT interaction, status FROM audit_log WHERE request_id = :r"),
                                {"r": "slow-search-0001"}).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("search-type", 200)]
