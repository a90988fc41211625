"""A database that turns read-only (PostgreSQL `default_transaction_read_only`, as on a standby after a
fail-over or a full volume remounted read-only): writes are refused with 503, an OperationOutcome and
Retry-After (the condition is transient and the request can be retried as it was); reads go on (their audit
rows spooled); nothing written before is lost, a refused transaction leaves nothing behind, and once the database
takes writes again they work and the spooled audit rows are flushed."""

from __future__ import annotations

import time

import httpx
import orjson

from tests.faults.support import (
    FHIR,
    bundles_whole,
    environment,
    headers_for,
    is_outcome,
    prepare,
    serving,
    stored,
    visit,
)
from tests.running import free_port


def _audited(url: str, ids: list[str], wait: float) -> set[str]:
    from sqlalchemy import bindparam, text

    engine = stored(url)
    deadline = time.monotonic() + wait
    try:
        while True:
            with engine.connect() as conn:
                got = {r for (r,) in conn.execute(text("SELECT request_id FROM audit_log WHERE request_id IN :ids")
                                                  .bindparams(bindparam("ids", expanding=True)), {"ids": ids})}
            if len(got) == len(set(ids)) or time.monotonic() > deadline:
                return got
            time.sleep(1)
    finally:
        engine.dispose()


def test_read_only_database_refuses_writes_with_503_and_loses_nothing(private_pg, pg_url, tmp_path):
    port = free_port()
    env = environment(pg_url, tmp_path, port)
    prepare(env)
    h = headers_for(env, "nurse.nina", "gp-system")
    db = pg_url.rsplit("/", 1)[1]
    with serving(env, port, workers=1) as server, httpx.Client(base_url=server.base, timeout=30) as c:
        first = c.post("/fhir", content=orjson.dumps(visit("before")), headers={**h["gp-system"], "Content-Type": FHIR})
        assert first.status_code == 200, first.text
        private_pg.sql(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')
        private_pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")  # reconnect
        try:
            refused = c.post("/fhir", content=orjson.dumps(visit("during")),
                             headers={**h["gp-system"], "Content-Type": FHIR})
            if refused.status_code != 503:  # (the first use of a pooled connection the server dropped is retried)
                refused = c.post("/fhir", content=orjson.dumps(visit("during")),
                                 headers={**h["gp-system"], "Content-Type": FHIR})
            assert refused.status_code == 503, refused.text
            assert is_outcome(refused.content) and refused.headers["retry-after"].isdigit()
            assert "unavailable" in refused.json()["issue"][0]["diagnostics"]
            single = c.post("/fhir/Observation", headers={**h["nurse.nina"], "Content-Type": FHIR}, json={
                "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/pat-pat"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}})
            assert single.status_code == 503 and is_outcome(single.content), single.text
            read = c.get("/fhir/Patient/pat-pat", headers=h["nurse.nina"])
            assert read.status_code == 200, read.text
            during = [refused.headers["x-request-id"], single.headers["x-request-id"], read.headers["x-request-id"]]
        finally:
            private_pg.sql(f'ALTER DATABASE "{db}" RESET default_transaction_read_only')
            private_pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
        deadline = time.monotonic() + 30
        while True:
            again = c.post("/fhir", content=orjson.dumps(visit("after")),
                           headers={**h["gp-system"], "Content-Type": FHIR})
            if again.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert again.status_code == 200, again.text
        # (while the server runs: it flushes the audit spool every few seconds)
        assert _audited(pg_url, [first.headers["x-request-id"], *during], wait=20) == {
            first.headers["x-request-id"], *during}  # the refused writes and the read, from the spool

    whole = bundles_whole(pg_url)
    assert whole.get("before") == 4 and whole.get("after") == 4 and "during" not in whole, whole
