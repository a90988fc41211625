"""What running behind pgbouncer in transaction mode costs: `python -m bench.pooler_bench [--requests N]
[--throughput]`.

One fresh PostgreSQL database (its role's default statement_timeout set as the README asks) served three ways:
`direct` (the service connected to PostgreSQL itself), `direct, pooler mode` (still direct, with
`SHAREDCARE_DATABASE_POOLER=transaction`: what the service's own changes cost, i.e. no server-side prepared
statements) and `pgbouncer` (through Debian's pgbouncer, `pool_mode = transaction`, `default_pool_size`
POOL_SIZE, with that setting).
1. Latency: one `sharedcare serve` per way, requests sent one at a time and alternated between the three, so all
   see the same machine load (this machine is shared): median and mean of a read, a search and a create.
2. `--throughput`: the http benchmark's wrk runs (wrk -t2 -c32, `serve --workers 2`) one way after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench import wrk
from bench.http_bench import OBSERVATION, _service
from bench.http_servers import cli, free_port, serving
from bench.load.pgbouncer import PgBouncer
from bench.search_bench import PG_ADMIN_URL, fresh_database

POOL_SIZE = 10  # server connections pgbouncer keeps for the service
WAYS = (("direct", "none", False), ("direct, pooler mode", "transaction", False), ("pgbouncer", "transaction", True))
OPS = (("read", "GET", "/fhir/Patient/pat-pat"), ("search", "GET", "/fhir/CarePlan?subject=Patient/pat-pat"),
       ("create", "POST", "/fhir/Observation"))


def _latency(urls: dict[str, str], tmp: Path, n: int) -> dict[str, dict[str, list[float]]]:
    exe = str(Path(sys.executable).parent / "sharedcare")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_VAR_DIR=str(tmp), SHAREDCARE_DEMO="1", SHAREDCARE_BASE_URL="http://127.0.0.1:1",
               SHAREDCARE_API_RATE_PER_MINUTE="100000000", SHAREDCARE_DATABASE_URL=urls["direct"])
    cli([exe, "db", "upgrade"], env)
    cli([exe, "demo", "load"], env)
    headers = {"Authorization": f"Bearer {cli([exe, 'token', '--user', 'nurse.nina'], env).strip()}",
               "Content-Type": "application/fhir+json"}
    times: dict[str, dict[str, list[float]]] = {label: {op: [] for op, _, _ in OPS} for label, _, _ in WAYS}
    with ExitStack() as stack, httpx.Client(timeout=60) as http:
        bases = {}
        for label, mode, _ in WAYS:
            port = free_port()
            bases[label] = f"http://127.0.0.1:{port}"
            stack.enter_context(serving(
                [exe, "serve", "--port", str(port)],
                {**env, "SHAREDCARE_DATABASE_URL": urls[label], "SHAREDCARE_DATABASE_POOLER": mode},
                f"{bases[label]}/readyz", tmp / f"{mode}-{port}.log"))
        body = json.dumps(OBSERVATION).encode()
        for op, method, path in OPS:
            for i in range(n * len(WAYS) + 60):
                label = WAYS[i % len(WAYS)][0]
                t0 = time.perf_counter()
                r = http.request(method, bases[label] + path, headers=headers,
                                 content=body if method == "POST" else None)
                dt = time.perf_counter() - t0
                if r.status_code >= 300:
                    raise RuntimeError(f"{op} through {label} answered {r.status_code}: {r.text[:300]}")
                if i >= 60:  # (warm-up)
                    times[label][op].append(dt)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pooler_bench")
    p.add_argument("--requests", type=int, default=500, help="sequential requests per operation and way")
    p.add_argument("--throughput", action="store_true", help="also the wrk runs (a few minutes)")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    admin = make_url(PG_ADMIN_URL)
    with tempfile.TemporaryDirectory(prefix="sc-pooler-bench-") as name, \
            fresh_database("postgresql", Path(name)) as url, \
            PgBouncer(admin.host or "127.0.0.1", admin.port or 5432, pool_size=POOL_SIZE) as bouncer:
        tmp, database = Path(name), str(make_url(url).database)
        engine = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'ALTER ROLE "{admin.username}" IN DATABASE "{database}" SET statement_timeout = '
                              "'15s'"))
        engine.dispose()
        urls = {label: bouncer.url(database) if pooled else url for label, _, pooled in WAYS}
        times = _latency(urls, tmp, args.requests)
        print(f"pooler bench: sequential requests alternated between the three ways, {args.requests} per operation "
              f"and way; load average before {load:.2f} on {os.cpu_count()} cpus")
        print(f"{'median (mean) ms':18s}" + "".join(f"{label:>24s}" for label, _, _ in WAYS))
        for op, _, _ in OPS:
            cells = [f"{statistics.median(times[label][op]) * 1e3:.2f} ({statistics.mean(times[label][op]) * 1e3:.2f})"
                     for label, _, _ in WAYS]
            print(f"{op:18s}" + "".join(f"{c:>24s}" for c in cells))
        if not args.throughput:
            return 0
        wrk.ensure_wrk()
        seconds = int(os.environ.get("SHAREDCARE_BENCH_HTTP_SECONDS", "10"))
        runs: dict[str, tuple[dict[str, wrk.Result], int]] = {}
        for label, mode, _ in WAYS:
            os.environ["SHAREDCARE_DATABASE_POOLER"] = mode
            (tmp / f"wrk-{len(runs)}").mkdir()
            runs[label] = _service(urls[label], tmp / f"wrk-{len(runs)}", seconds)
    print(f"throughput: wrk -t2 -c32 for {seconds} s per operation, serve --workers 2, pgbouncer default_pool_size "
          f"{POOL_SIZE}, one way after the other")
    print(f"{'req/s (p50, p99 ms)':20s}" + "".join(f"{label:>26s}" for label in runs))
    for op in runs["direct"][0]:
        print(f"{op:20s}" + "".join(f"{f'{r[op].rps:.0f} ({r[op].p50_ms:.1f}, {r[op].p99_ms:.1f})':>26s}"
                                    for r, _ in runs.values()))
    print("server log error lines: " + ", ".join(f"{label} {errors}" for label, (_, errors) in runs.items()))
    return 0 if not any(errors for _, errors in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
