"""Bulk export: the export rate (resources/s) and the worker's peak memory as the export grows, on PostgreSQL.

    python -m bench.export_bench [--sizes 20000,100000,300000] [--backend postgresql|sqlite]
    make bench BENCH_ARGS="--only export"          # sizes from SHAREDCARE_BENCH_EXPORT_SIZES (default above)

For each size a fresh database gets a generated Synthea-shaped population (bench.search_bench's generator:
patients with care plans, encounters, conditions and observations, with their index rows, bulk-loaded), then one
system-level `$export` job is queued for a research client (purpose HRESCH: the National Data Opt-out and
research objections are part of every page's SQL) and run to the end by `sharedcare export work --once` in its
own process: the figures are that process's wall time and peak resident memory (wait4's ru_maxrss). The job runs
as the real worker does: page by page through the Repository and search engine, files written to the database
in 1 MiB chunks. Every exported resource is counted from the files (checked against the population).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

NAME = "export"
SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")
CLIENT = "bench-research"


def _batch(job: tuple[int, int, int, str, int]) -> tuple[int, dict[str, tuple[list[str], list[tuple]]]]:
    """Patients [start, stop) and their resources (bench.search_bench's shapes), as stored rows with their owner
    and the indexer's own rows. Runs in a worker process."""
    import orjson

    from bench.search_bench import _others, _patient
    from service.search import indexer
    from service.storage.store import canonical, new_id

    start, stop, per_patient, base, lu = job
    res_rows: list[tuple] = []
    idx: dict[str, list[dict[str, Any]]] = {}
    for i in range(start, stop):
        pid = new_id()
        for res in [_patient(i)] + _others(pid, i, per_patient):
            rid = pid if res["resourceType"] == "Patient" else new_id()
            content = canonical(res, rid, 1, lu)
            indexer.merge(idx, indexer.index_rows(res["resourceType"], rid, orjson.loads(content), base, [pid]))
            res_rows.append((res["resourceType"], rid, 1, lu, False, content.decode(), pid, pid))
            lu += 1
    tables = {"resource": (["res_type", "res_id", "version", "last_updated", "deleted", "content", "patient_id",
                            "owners"], res_rows)}
    for name, rows in idx.items():
        if rows:
            cols = list(rows[0])
            tables[name] = (cols, [tuple(r[c] for c in cols) for r in rows])
    return len(res_rows), tables


def _insert(services: Any, tables: dict[str, tuple[list[str], list[tuple]]]) -> None:
    """Bulk insert one batch (COPY on PostgreSQL): the resources, the same rows as their first versions, and the
    index rows into the indexer's own tables."""
    from sqlalchemy import insert

    from service.search import indexer
    from service.storage.tables import resource as R
    from service.storage.tables import resource_version as V

    work = [(R, *tables["resource"])]
    cols, rows = tables["resource"]
    work.append((V, [*cols, "method"], [(*r, "POST") for r in rows]))
    work += [(indexer.TABLES[name], c, r) for name, (c, r) in tables.items() if name != "resource"]
    with services.db.write() as conn:
        if services.db.is_postgres:
            with conn.connection.driver_connection.cursor() as cur:
                for table, cols, rows in work:
                    with cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        else:
            for table, cols, rows in work:
                conn.execute(insert(table), [dict(zip(cols, r, strict=True)) for r in rows])


def generate(services: Any, patients: int, per_patient: int, log: Any) -> int:
    """Bulk-load the population (COPY on PostgreSQL), then ANALYZE; returns how many resources."""
    from concurrent.futures import ProcessPoolExecutor

    base = services.settings.fhir_base
    lu0 = int(time.time() * 1_000_000) - 10 ** 12
    size = 500
    work = [(s, min(patients, s + size), per_patient, base, lu0 + s * (per_patient + 1))
            for s in range(0, patients, size)]
    total = 0
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        for k, (n, tables) in enumerate(pool.map(_batch, work)):
            _insert(services, tables)
            total += n
            if k % 40 == 0:
                log(f"   loaded {total} resources ({time.perf_counter() - started:.0f}s)")
    if services.db.is_postgres:
        with services.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return total


def _queue(services: Any) -> str:
    import orjson

    from service.export import jobs
    from service.export.spec import ExportSpec

    spec = ExportSpec(level="system", request=f"{services.settings.fhir_base}/$export")
    claims = {"iss": services.auth.tokens.issuer, "sub": CLIENT, "client_id": CLIENT, "kind": "system",
              "scope": "system/*.rs"}
    with services.db.write() as conn:
        return jobs.create(conn, level="system", group_id=None, spec=spec.to_json(), owner=CLIENT, client_id=CLIENT,
                           caller=orjson.dumps({"claims": claims, "purposes": ["HRESCH"]}).decode())


def _exported(services: Any, jid: str) -> tuple[int, int, int]:
    """(resources in the files, files, bytes), counted from the chunks' lines."""
    from sqlalchemy import func, select

    from service.export.tables import export_chunk as C
    from service.export.tables import export_file as F

    with services.db.read() as conn:
        files, size, declared = conn.execute(select(func.count(), func.sum(F.c.bytes), func.sum(F.c.count))
                                             .where(F.c.job_id == jid)).one()
        lines = 0
        for (data,) in conn.execute(select(C.c.data).where(C.c.job_id == jid)).yield_per(16):
            lines += bytes(data).count(b"\n")
    assert lines == (declared or 0), (lines, declared)
    return lines, int(files or 0), int(size or 0)


def _memory(pid: int) -> tuple[int, int]:
    """(resident MB now, peak resident MB so far) of a running process (Linux /proc)."""
    now = peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) // 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) // 1024
    return now, peak


def _watch(services: Any, pid: int, jid: str, log: Any) -> list[str]:
    """While the worker runs: each time its peak resident memory grows by 5 MB or more, what the job was doing."""
    from service.export import jobs

    jumps: list[str] = []
    last = 0
    while True:
        try:
            now, peak = _memory(pid)
        except (OSError, ValueError):
            return jumps
        if peak == 0:  # (exited: a zombie until waited for)
            return jumps
        if peak - last >= 5:
            with services.db.read() as conn:
                job = jobs.get(conn, jid)
            jumps.append(f"peak {peak} MB (now {now}) at: {job.progress if job else '?'}")
            log("   " + jumps[-1])
            last = peak
        time.sleep(0.05)


def one_size(backend: str, resources: int, log: Any) -> dict[str, Any]:
    from bench.search_bench import fresh_database
    from service.bootstrap import build_services
    from service.config import load_settings
    from service.export import jobs
    from service.migrate import upgrade

    per_patient = 10
    patients = max(1, resources // (per_patient + 1))
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        upgrade(url)
        settings = replace(load_settings(), database_url=url, var_dir=Path(tmp), keys_dir=Path(tmp) / "keys", demo=True)
        services = build_services(settings)
        try:
            stored = generate(services, patients, per_patient, log)
            jid = _queue(services)
            env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
            env.update(SHAREDCARE_DATABASE_URL=url, SHAREDCARE_VAR_DIR=tmp, SHAREDCARE_KEYS_DIR=str(Path(tmp) / "keys"),
                       SHAREDCARE_SECONDARY_USE_CLIENTS=CLIENT, SHAREDCARE_AUDIT_SEAL_SECONDS="0", SHAREDCARE_DEMO="1",
                       SHAREDCARE_STATEMENT_TIMEOUT_SECONDS="0")
            t0 = time.perf_counter()
            proc = subprocess.Popen([SHAREDCARE, "export", "work", "--once"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            jumps = _watch(services, proc.pid, jid, log)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            err = proc.stderr.read().decode() if proc.stderr else ""
            if proc.returncode != 0:
                raise RuntimeError(f"export worker failed: {err[-2000:]}")
            with services.db.read() as conn:
                job = jobs.get(conn, jid)
            assert job is not None and job.state == "done", (job, err[-2000:])
            run_s = (job.finished_us - job.transaction_us) / 1e6
            exported, files, size = _exported(services, jid)
            maxrss_kb = usage.ru_maxrss  # (Linux: kilobytes)
            return {"jumps": jumps, "backend": backend, "stored": stored, "exported": exported, "files": files,
                    "mb": size / 1e6, "run_s": run_s, "wall_s": wall, "rate": exported / run_s,
                    "rss_mb": maxrss_kb / 1024}
        finally:
            services.db.dispose()


def bench(backend: str, sizes: list[int], log: Any = print) -> list[str]:
    header = (f"{'backend':10s} {'stored':>9s} {'exported':>9s} {'files':>5s} {'MB':>7s} {'job s':>7s} "
              f"{'res/s':>8s} {'process s':>9s} {'peak RSS MB':>11s}")
    lines = [header]
    for n in sizes:
        r = one_size(backend, n, log)
        lines.append(f"{r['backend']:10s} {r['stored']:9d} {r['exported']:9d} {r['files']:5d} {r['mb']:7.1f} "
                     f"{r['run_s']:7.1f} {r['rate']:8.0f} {r['wall_s']:9.1f} {r['rss_mb']:11.0f}")
        log(lines[-1])
    lines.append("(job s: the job's own time, claim to finish; process s adds the worker process's start; peak RSS: "
                 "the worker process's maximum resident memory, which should not grow with the export)")
    return lines


def run(args: argparse.Namespace) -> list[str]:
    """For bench.run: PostgreSQL (or the first backend asked for), sizes from SHAREDCARE_BENCH_EXPORT_SIZES."""
    default = "5000,20000" if args.quick else "20000,100000,300000"
    sizes = [int(x) for x in os.environ.get("SHAREDCARE_BENCH_EXPORT_SIZES", default).split(",") if x]
    backend = "postgresql" if "postgresql" in args.backends else args.backends[0]
    return bench(backend, sizes, log=lambda s: print(s, file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="20000,100000,300000", help="resources stored, comma-separated")
    p.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    a = p.parse_args(argv)
    for line in bench(a.backend, [int(x) for x in a.sizes.split(",")], log=lambda s: print(s, file=sys.stderr)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
