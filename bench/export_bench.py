"""Bulk export: the export rate (resources/s) and the export worker's peak memory as the export grows.

    python -m bench.export_bench [--resources N]        # exports at N/10, 3N/10 and N (default N = 100,000)
    python -m bench.export_bench --resources 1000000    # the issue's size (many minutes on 2 cores)
    python -m bench.export_bench --sizes 50000,200000 [--keep] [--database NAME]
    make bench BENCH_ARGS="--only export"               # N from SHAREDCARE_BENCH_EXPORT_RESOURCES (100,000)

One PostgreSQL database per run (dropped afterwards unless --keep; --database NAME runs on a database an
earlier --keep left, growing it as needed). A template population is written through the real write path
(`sharedcare import`), then copied inside PostgreSQL up to each size in turn (bench.export_seed). At each size a
`sharedcare export work` process (the worker loop each serve process runs in a thread) is started and left to go
idle, its resident high-water mark is reset (/proc/PID/clear_refs), and one system-level `$export` job is queued
for a research client (purpose HRESCH: the National Data Opt-out is part of every page's SQL, and every 50th
person is on it). Figures: the job's own time (claim to finish), the worker's and the database backends' CPU
time during it, the worker's start-up peak and resident size before the job, and its peak during the job (VmHWM
from the reset to the job's end). The exported lines are counted from the stored chunks and must equal the
database's own count (every resource but AuditEvents and those of opted-out people).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NAME = "export"
SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")
CLIENT = "bench-research"
DEFAULT_RESOURCES = 100_000


@contextmanager
def database(name: str | None, keep: bool, log: Any) -> Iterator[tuple[str, bool]]:
    """(URL, whether it is new): a new database (dropped afterwards unless `keep`), or the kept one `name`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from bench.search_bench import PG_ADMIN_URL

    admin = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    new = name is None
    name = name or f"sc_bench_export_{uuid.uuid4().hex[:8]}"
    if new:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), new
    finally:
        if keep or not new:
            log(f"   database {name} kept (again: --database {name}; drop it when done: DROP DATABASE \"{name}\")")
        else:
            with admin.connect() as conn:
                conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


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


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(services: Any) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving this database (the server runs on this machine)."""
    with services.db.read() as conn:
        pids = [r[0] for r in conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'")]
    out = {}
    for pid in pids:
        try:
            out[pid] = _cpu(pid)
        except (OSError, IndexError, ValueError):  # (gone, or another machine's server)
            pass
    return out


def _job_state(services: Any, jid: str) -> Any:
    from service.export import jobs

    with services.db.read() as conn:
        return jobs.get(conn, jid)


def _worker(services: Any, env: dict[str, str], tmp: str, log: Any) -> dict[str, Any]:
    """Start `sharedcare export work` (the worker loop every serve process runs in a thread), wait until it is
    idle, reset its resident high-water mark (/proc/PID/clear_refs), queue one export and wait for it to finish;
    then stop the worker (SIGTERM). Returns the job, the worker's start-up peak, its resident MB before the job, its
    peak while the job ran (VmHWM) and each 5 MB step of that peak with the job's progress. Not wait4's ru_maxrss: a
    child's counts the parent's own peak at the time it was spawned (exec records the old address space's
    high-water mark), so it measured this benchmark process, which grows as it counts the exported lines."""
    err_path = Path(tmp) / f"worker-{uuid.uuid4().hex[:6]}.log"
    with err_path.open("wb") as err:
        proc = subprocess.Popen([SHAREDCARE, "export", "work"], env={**env, "SHAREDCARE_EXPORT_POLL_SECONDS": "0.2"},
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while b"export worker running" not in err_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"export worker did not start: {err_path.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(2.0)  # (its first idle polls)
        before, start_peak = _memory(proc.pid)
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the high-water mark is now the current size
        cpu0, pg0 = _cpu(proc.pid), _backends(services)
        jid = _queue(services)
        jumps: list[str] = []
        last = before
        for tick in itertools.count():
            now, peak = _memory(proc.pid)
            if peak - last >= 5 or tick % 10 == 0:
                job = _job_state(services, jid)
                if peak - last >= 5:
                    jumps.append(f"peak {peak} MB (now {now}) at: {job.progress if job else '?'}")
                    log("   " + jumps[-1])
                    last = peak
                if job is None or job.state not in ("queued", "running"):
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"export worker died: {err_path.read_text()[-2000:]}")
            time.sleep(0.05)
        _, job_peak = _memory(proc.pid)
        cpu = _cpu(proc.pid) - cpu0
        pg = sum(t - pg0.get(pid, 0.0) for pid, t in _backends(services).items())
    finally:
        proc.terminate()
    proc.wait()
    return {"job": job, "start_mb": start_peak, "before_mb": before, "peak_mb": job_peak, "jumps": jumps, "cpu_s": cpu, "pg_cpu_s": pg}


def _env(url: str, tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_DATABASE_URL=url, SHAREDCARE_VAR_DIR=tmp, SHAREDCARE_KEYS_DIR=str(Path(tmp) / "keys"),
               SHAREDCARE_SECONDARY_USE_CLIENTS=CLIENT, SHAREDCARE_AUDIT_SEAL_SECONDS="0", SHAREDCARE_DEMO="1",
               SHAREDCARE_STATEMENT_TIMEOUT_SECONDS="0")
    return env


def one_export(services: Any, env: dict[str, str], tmp: str, log: Any) -> dict[str, Any]:
    from bench.export_seed import expected
    from service.export import jobs

    want = expected(services)
    w = _worker(services, env, tmp, log)
    job = w["job"]
    assert job is not None and job.state == "done", job
    run_s = (job.finished_us - job.transaction_us) / 1e6
    exported, files, size = _exported(services, job.id)
    jobs.cancel(services.db, job.id, 0)  # (its files go: the shared disk)
    if exported != want:
        raise RuntimeError(f"the export holds {exported} resources, the database says {want}")
    return {**w, "exported": exported, "files": files, "mb": size / 1e6, "run_s": run_s, "rate": exported / run_s}


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of peak MB against resources, in MB per 100,000 resources."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx * 100_000 if sxx else 0.0


def bench(sizes: list[int], log: Any = print, *, template_patients: int | None = None, keep: bool = False,
          name: str | None = None) -> list[str]:
    from bench import export_seed
    from service.bootstrap import build_services
    from service.config import load_settings
    from service.migrate import upgrade

    sizes = sorted(sizes)
    per_person = export_seed.PER_PATIENT + 1
    patients = template_patients or max(20, min(1000, sizes[0] // per_person))
    header = (f"{'stored':>9s} {'exported':>9s} {'files':>5s} {'MB':>7s} {'job s':>7s} {'res/s':>7s} "
              f"{'worker CPU s':>12s} {'PG CPU s':>8s} {'start-up peak MB':>16s} {'RSS before MB':>13s} "
              f"{'peak in job MB':>14s}")
    lines = [header]
    points: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp, database(name, keep, log) as (url, new):
        upgrade(url)
        env = _env(url, tmp)
        settings = load_settings(database_url=url, var_dir=Path(tmp), keys_dir=Path(tmp) / "keys", demo=True,
                                 secondary_use_clients=frozenset({CLIENT}), statement_timeout=0.0)
        services = build_services(settings)
        try:
            if new:
                export_seed.template(services, env, patients, log)
            with services.db.read() as conn:
                template = conn.exec_driver_sql("SELECT count(*) FROM resource r JOIN bench_patient p "
                                                "ON r.patient_id = p.pid").scalar_one()
                patients = conn.exec_driver_sql("SELECT count(*) FROM bench_patient").scalar_one()
            for size in sizes:
                stored = export_seed.grow(services, max(0, round(size / template) - 1), log)
                r = one_export(services, env, tmp, log)
                points.append((r["exported"], r["peak_mb"]))
                lines.append(f"{stored:9d} {r['exported']:9d} {r['files']:5d} {r['mb']:7.1f} {r['run_s']:7.1f} "
                             f"{r['rate']:7.0f} {r['cpu_s']:12.1f} {r['pg_cpu_s']:8.1f} {r['start_mb']:16.0f} "
                             f"{r['before_mb']:13.0f} {r['peak_mb']:14.0f}")
                log(lines[-1])
        finally:
            services.db.dispose()
    lines.append(f"peak-in-job slope: {slope(points):+.1f} MB per 100,000 resources exported; load average "
                 f"{os.getloadavg()[0]:.1f} at the end")
    lines.append(f"(stored: patient data, a template of {patients} people written by `sharedcare import`, "
                 "copied in SQL; exported: a research export, less the opted-out; job s: claim to finish; worker "
                 "CPU s, PG CPU s: CPU time of the worker process and of the database's backends during the job; "
                 "start-up peak: the worker's high-water mark before the job; RSS before: its size when idle; peak "
                 "in job: its high-water mark from the job's queueing to its end)")
    return lines


def _sizes(resources: int) -> list[int]:
    return [resources // 10, 3 * resources // 10, resources]


def run(args: argparse.Namespace) -> list[str]:
    """For bench.run: PostgreSQL, sizes N/10, 3N/10, N for N = SHAREDCARE_BENCH_EXPORT_RESOURCES (default 100,000;
    --quick: 20,000)."""
    default = 20_000 if args.quick else DEFAULT_RESOURCES
    if "postgresql" not in args.backends:
        return ["(PostgreSQL only: the population is copied inside PostgreSQL)"]
    n = int(os.environ.get("SHAREDCARE_BENCH_EXPORT_RESOURCES", default))
    return bench(_sizes(n), log=lambda s: print(s, file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--resources", type=int, default=DEFAULT_RESOURCES,
                   help="export at a tenth, three tenths and all of this many resources (default 100,000)")
    p.add_argument("--sizes", default=None, help="resources at each export, comma-separated (instead of --resources)")
    p.add_argument("--template-patients", type=int, default=None, help="people in the template (default up to 1000)")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards (it is named on stderr)")
    p.add_argument("--database", default=None, help="run on a database an earlier --keep left (not dropped)")
    a = p.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else _sizes(a.resources)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    for line in bench(sizes, log, template_patients=a.template_patients, keep=a.keep, name=a.database):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
