"""PostgreSQL restarted in the middle of a mixed load (partner transactions and a nurse's reads against
`sharedcare serve --workers 2`): while it is down every answer is 503 with an OperationOutcome and Retry-After,
the service recovers by itself when it is back, every acknowledged write is stored whole with its audit row, and
the requests refused while it was down are audited too (spooled, then flushed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.faults.support import (
    Load,
    bundles_whole,
    check_acknowledged,
    environment,
    headers_for,
    is_outcome,
    prepare,
    serving,
    stored,
)
from tests.running import free_port

DOWN_SECONDS = 4


def test_restart_under_load_answers_503_recovers_and_loses_nothing(private_pg, pg_url, tmp_path):
    port = free_port()
    env = environment(pg_url, tmp_path, port)
    prepare(env)
    headers = headers_for(env, "nurse.nina", "gp-system")
    with serving(env, port, workers=2) as server:
        load = Load(server.base, headers).start(writers=3, readers=2)
        try:
            time.sleep(3)
            down_at = time.monotonic()
            private_pg.stop("fast")  # everyone disconnected, as on a restart or a fail-over
            time.sleep(DOWN_SECONDS)
            private_pg.start()
            up_at = time.monotonic()
            deadline = up_at + 30
            while time.monotonic() < deadline and not (load.ok_after.get("write", 0) > up_at + 1
                                                      and load.ok_after.get("read", 0) > up_at + 1):
                time.sleep(0.5)
            time.sleep(1)
        finally:
            load.stop()
        # (checked while the server runs: its supervising process flushes the audit spool every few seconds)
        _check(private_pg, pg_url, tmp_path, load, down_at, up_at, server.log_text)


def _check(private_pg: object, pg_url: str, tmp_path: Path, load: Load, down_at: float, up_at: float,
           server_log: Callable[[], str]) -> None:
    log = server_log()

    assert load.ok_after.get("write", 0) > up_at and load.ok_after.get("read", 0) > up_at, (
        f"the service did not recover within 30 s of PostgreSQL's return: {load.failed[-3:]}")
    refused = [f for f in load.failed if down_at <= f[0]]
    assert refused, "nothing was refused while PostgreSQL was down"
    for _t, kind, status, hdrs, body in load.failed:
        assert status == 503, f"{kind} answered {status} (not 503): {body[:300]!r}"
        assert is_outcome(body), body[:300]
        assert hdrs.get("retry-after", "").isdigit(), hdrs
    assert len(load.acked_bundles) > 0
    check_acknowledged(pg_url, load, wait_audit=10)
    whole = bundles_whole(pg_url)
    assert all(n == 4 for n in whole.values()), {t: n for t, n in whole.items() if n != 4}
    assert set(load.acked_bundles) <= set(whole)

    # the refused requests are on the audit trail too (spooled while the database was away, then flushed)
    from sqlalchemy import bindparam, text

    refused_ids = [h["x-request-id"] for _t, _k, _s, h, _b in load.failed if "x-request-id" in h]
    engine = stored(pg_url)
    try:
        deadline = time.monotonic() + 20
        while True:
            with engine.connect() as conn:
                got = {r for (r,) in conn.execute(text("SELECT request_id FROM audit_log WHERE request_id IN :ids")
                                                  .bindparams(bindparam("ids", expanding=True)), {"ids": refused_ids})}
            if len(got) == len(set(refused_ids)) or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        engine.dispose()
    if len(got) != len(set(refused_ids)):
        import collections

        spool = sorted(p.name for p in (tmp_path / "var" / "audit-spool").glob("*"))
        kinds = collections.Counter((k, s, b[:120]) for _t, k, s, h, b in load.failed
                                    if h.get("x-request-id") not in got)
        spooled = log.count("spooled to")
        raise AssertionError(f"{len(set(refused_ids)) - len(got)} refused requests not audited: {kinds}; "
                             f"spool now {spool[:5]}; {spooled} spool lines logged")
