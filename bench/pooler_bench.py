"""HTTP under load straight to PostgreSQL vs behind pgbouncer in transaction mode: the same wrk runs as the http
benchmark (read, search, create; `sharedcare serve --workers 2`, wrk -t2 -c32) on one fresh database, first with
the service connected to PostgreSQL itself, then through Debian's pgbouncer (`pool_mode = transaction`,
`default_pool_size` POOL_SIZE) with `SHAREDCARE_DATABASE_POOLER=transaction`. The database role's default
statement_timeout is set as the README asks, so both runs bound statements alike.

    .venv/bin/python -m bench.pooler_bench      (SHAREDCARE_BENCH_HTTP_SECONDS: seconds per operation, default 10)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench import wrk
from bench.http_bench import _service
from bench.load.pgbouncer import PgBouncer
from bench.search_bench import PG_ADMIN_URL, fresh_database

POOL_SIZE = 10  # server connections pgbouncer keeps for the service


def main() -> int:
    wrk.ensure_wrk()
    seconds = int(os.environ.get("SHAREDCARE_BENCH_HTTP_SECONDS", "10"))
    load = os.getloadavg()[0]
    admin = make_url(PG_ADMIN_URL)
    with tempfile.TemporaryDirectory(prefix="sc-pooler-bench-") as name, \
            fresh_database("postgresql", Path(name)) as url:
        tmp, database = Path(name), make_url(url).database
        engine = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'ALTER ROLE "{admin.username}" IN DATABASE "{database}" SET statement_timeout = '
                              "'15s'"))
        engine.dispose()
        os.environ["SHAREDCARE_DATABASE_POOLER"] = "none"
        (tmp / "direct").mkdir()
        direct, direct_errors = _service(url, tmp / "direct", seconds)
        with PgBouncer(admin.host or "127.0.0.1", admin.port or 5432, pool_size=POOL_SIZE) as bouncer:
            os.environ["SHAREDCARE_DATABASE_POOLER"] = "transaction"
            (tmp / "pooled").mkdir()
            pooled, pooled_errors = _service(bouncer.url(str(database)), tmp / "pooled", seconds)
    print(f"pooler bench: {seconds} s per operation, wrk -t2 -c32, serve --workers 2, pgbouncer "
          f"default_pool_size {POOL_SIZE}; load average before {load:.2f} on {os.cpu_count()} cpus")
    print(f"{'operation':10s} {'direct req/s':>13s} {'p50 ms':>7s} {'p99 ms':>7s}   {'pgbouncer req/s':>15s} "
          f"{'p50 ms':>7s} {'p99 ms':>7s}   ratio")
    for op, d in direct.items():
        p = pooled[op]
        print(f"{op:10s} {d.rps:13.0f} {d.p50_ms:7.2f} {d.p99_ms:7.2f}   {p.rps:15.0f} {p.p50_ms:7.2f} "
              f"{p.p99_ms:7.2f}   {p.rps / d.rps if d.rps else 0:.2f}")
    print(f"server log error lines: direct {direct_errors}, pgbouncer {pooled_errors}")
    return 0 if not direct_errors and not pooled_errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
