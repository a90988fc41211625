"""What the request log costs on the hot path: `python -m bench.ops_log_bench [--backend sqlite|postgresql]
[--reads N]`.

1. The log call alone: `service.logging.log_request` formatting and writing one JSON line to a file.
2. A consented, audited point read (GET Patient/{id}) against two `sharedcare serve` processes on one database,
   one logging every request (SHAREDCARE_LOG_LEVEL=info) and one not (warning), requests alternated between them
   so both see the same machine load; mean and median latency of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.http_servers import cli, free_port, serving

PG_ADMIN = os.environ.get("SHAREDCARE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def log_call_cost(n: int = 20000) -> float:
    """Seconds per request line, written the way the server writes them (stderr pointed at a file meanwhile)."""
    from service.logging import configure_logging, log_request

    configure_logging()
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile("wb", suffix=".log") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            t0 = time.perf_counter()
            for i in range(n):
                log_request("0af7651916cd43dd8448eb211c80319c", "GET", "read", "Patient", 200, 0.0012 + i * 1e-9)
            return (time.perf_counter() - t0) / n
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ops_log_bench")
    p.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--reads", type=int, default=3000)
    args = p.parse_args(argv)
    print(f"log_request (format + write one line): {log_call_cost() * 1e6:.1f} us per request")
    home = Path(tempfile.mkdtemp(prefix="sc-logbench-"))
    admin = None
    if args.backend == "postgresql":
        admin = create_engine(PG_ADMIN, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        name = f"sc_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{home / 'bench.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_DATABASE_URL=url, SHAREDCARE_VAR_DIR=str(home), SHAREDCARE_DEMO="1",
               SHAREDCARE_BASE_URL="http://127.0.0.1:1", SHAREDCARE_API_RATE_PER_MINUTE="1000000")
    exe = str(Path(sys.executable).parent / "sharedcare")
    try:
        cli([exe, "db", "upgrade"], env)
        cli([exe, "demo", "load"], env)
        token = cli([exe, "token", "--user", "nurse.nina"], env).strip()
        ports = free_port(), free_port()
        with serving([exe, "serve", "--port", str(ports[0])], {**env, "SHAREDCARE_LOG_LEVEL": "info"},
                     f"http://127.0.0.1:{ports[0]}/readyz", home / "on.log"), \
                serving([exe, "serve", "--port", str(ports[1])], {**env, "SHAREDCARE_LOG_LEVEL": "warning"},
                        f"http://127.0.0.1:{ports[1]}/readyz", home / "off.log"), httpx.Client(timeout=30) as h:
            hdr = {"Authorization": f"Bearer {token}"}
            times: dict[int, list[float]] = {ports[0]: [], ports[1]: []}
            for i in range(args.reads * 2 + 200):
                port = ports[i % 2]
                t0 = time.perf_counter()
                r = h.get(f"http://127.0.0.1:{port}/fhir/Patient/pat-pat", headers=hdr)
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    raise RuntimeError(f"read answered {r.status_code}: {r.text[:300]}")
                if i >= 200:  # (warm-up)
                    times[port].append(dt)
        on, off = times[ports[0]], times[ports[1]]
        lines = sum(1 for ln in (home / "on.log").read_text().splitlines() if '"sharedcare.request"' in ln)
        print(f"point read ({args.backend}, sequential, {args.reads} each): with request log mean "
              f"{statistics.mean(on) * 1e3:.3f} ms median {statistics.median(on) * 1e3:.3f} ms; without mean "
              f"{statistics.mean(off) * 1e3:.3f} ms median {statistics.median(off) * 1e3:.3f} ms; "
              f"difference of medians {(statistics.median(on) - statistics.median(off)) * 1e6:+.0f} us "
              f"({lines} request lines written)")
    finally:
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
