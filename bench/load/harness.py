"""Set up, run and report one load run: a seeded PostgreSQL database, `sharedcare serve --workers N`, the mixed
workload, the references of the hot-path issue (bench/reference_apps.py) driven by the same client, and the check
that every acknowledged write and its audit row are in the database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.http_servers import ROOT, cli, free_port, log_errors, serving
from bench.load import population, workload
from bench.load.stats import OpStats

BIN = ROOT / ".venv" / "bin"
OUT = ROOT / "var" / "bench"
PG_ADMIN_URL = os.environ.get("SHAREDCARE_BENCH_PG_URL", os.environ.get(
    "SHAREDCARE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))


def log(msg: str) -> None:
    print(f"   {msg}", file=sys.stderr, flush=True)


@dataclass
class Options:
    patients: int = 10_000
    clinical: int = 8            # Synthea clinical resources per patient
    duration: float = 60.0
    workers: int = 2             # server worker processes
    seed_workers: int = 2
    mix: workload.Mix = field(default_factory=workload.Mix)
    ref_seconds: float = 15.0
    fresh: bool = False          # seed again even when a seeded template database exists
    keep: bool = False           # keep the run's database (its name is printed)
    admin_url: str = PG_ADMIN_URL


def _env(url: str, tmp: Path, port: int) -> dict[str, str]:
    return {**os.environ, "SHAREDCARE_DATABASE_URL": url, "SHAREDCARE_DEMO": "1", "SHAREDCARE_VAR_DIR": str(tmp),
            "SHAREDCARE_KEYS_DIR": str(tmp / "keys"), "SHAREDCARE_BASE_URL": f"http://127.0.0.1:{port}",
            # thousands of requests a minute per user: the limit runs (its cost is measured) but allows them
            "SHAREDCARE_API_RATE_PER_MINUTE": "100000000"}


def _admin(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def _db_url(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def template_key(opts: Options) -> str:
    """What the seeded template depends on: the population's size and code, and the migrations."""
    h = hashlib.sha256(f"{opts.patients}|{opts.clinical}".encode())
    h.update((Path(population.__file__)).read_bytes())
    for p in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        h.update(p.name.encode())
    return h.hexdigest()[:12]


def _seed_template(opts: Options, admin: Any, name: str, tmp: Path) -> None:
    from sqlalchemy import text

    building = f"{name}_building"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{building}"'))
        conn.execute(text(f'CREATE DATABASE "{building}"'))
    url = _db_url(opts.admin_url, building)
    env = _env(url, tmp, 8000)
    started = time.perf_counter()
    cli([str(BIN / "sharedcare"), "db", "upgrade"], env)
    cli([str(BIN / "sharedcare"), "demo", "load"], env)
    seeded = population.seed(url, tmp, opts.patients, opts.clinical, workers=opts.seed_workers, log=log)
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_load_seed (i integer PRIMARY KEY, patient text, assessment text)"))
        conn.execute(text("INSERT INTO bench_load_seed VALUES (:i, :p, :a)"),
                     [{"i": i, "p": p, "a": seeded.assessments[p]} for i, p in enumerate(seeded.patients)])
        conn.execute(text("CREATE TABLE bench_load_meta (seconds double precision, resources integer, "
                          "through_pipeline integer, copied integer, workers integer, at text)"))
        conn.execute(text("INSERT INTO bench_load_meta VALUES (:s, :r, :tp, :c, :w, :at)"),
                     {"s": seeded.seconds, "r": seeded.resources, "tp": seeded.through_pipeline, "c": seeded.copied,
                      "w": seeded.workers,
                      "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    log(f"seeded {opts.patients} patients ({seeded.resources} resources) in {time.perf_counter() - started:.0f}s")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))


@contextmanager
def seeded_database(opts: Options, tmp: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A database for this run, cloned from the seeded template (made first when missing, or with --fresh);
    dropped afterwards unless --keep. Yields its URL and the seed's figures."""
    from sqlalchemy import text

    admin = _admin(opts.admin_url)
    tpl = f"sc_load_tpl_{opts.patients}_{template_key(opts)}"
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": tpl}).scalar()
        if exists and opts.fresh:
            conn.execute(text(f'DROP DATABASE "{tpl}"'))
            exists = None
        if not exists:  # templates of this size made by older code or migrations: never used again
            for (old,) in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p AND datname <> :n"),
                                       {"p": f"sc_load_tpl_{opts.patients}_%", "n": tpl}).all():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{old}"'))
    cached = bool(exists)
    if not exists:
        _seed_template(opts, admin, tpl, tmp)
    name = f"sc_load_{uuid.uuid4().hex[:10]}"
    t0 = time.perf_counter()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"'))
    clone_s = time.perf_counter() - t0
    url = _db_url(opts.admin_url, name)
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        meta = dict(conn.execute(text("SELECT * FROM bench_load_meta")).mappings().one())
    engine.dispose()
    meta.update(template=tpl, cached=cached, clone_s=clone_s, database=name)
    try:
        yield url, meta
    finally:
        if not opts.keep:
            with admin.connect() as conn:
                conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def population_of(url: str, patients_signing_in: int) -> workload.Population:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT i, patient, assessment FROM bench_load_seed ORDER BY i")).all()
    engine.dispose()
    caseload = [p for i, p, _a in rows if i % 10 == 0]
    sam = [(p, a) for i, p, a in rows if i % 10 in (0, 5)]
    names = sorted({f"{population.FAMILY[0]}{i}"[:-1] for i, _p, _a in rows if i % 10 == 0 and i >= 10})[:200] \
        or [population.FAMILY[0]]
    return workload.Population(caseload=caseload, sam=sam, registered=[p for _i, p, _a in rows],
                               patients=caseload[:patients_signing_in], caseload_names=names)


def tokens_for(url: str, tmp: Path, port: int, pop: workload.Population) -> workload.Tokens:
    """Access tokens signed with the server's keys (the same keys dir): the demo identities, the gp-system
    client, and a patient identity (patient/ scopes) for each patient who signs in."""
    from service.auth import demo as auth_demo
    from service.auth.identities import CEILINGS, User
    from service.auth.issue import token_for_identity
    from service.auth.scopes import ScopeSet
    from service.bootstrap import build_services
    from service.config import load_settings

    settings = load_settings(database_url=url, var_dir=tmp, keys_dir=tmp / "keys",
                             base_url=f"http://127.0.0.1:{port}", demo=True, audit_seal_seconds=0)
    services = build_services(settings)
    try:
        users = {u.username: u for u in auth_demo.users()}
        tok = {name: token_for_identity(services, users[name], ttl=7200) for name in ("nurse.nina", "social.sam",
                                                                                     "ig.iris")}
        gp = next(c for c in auth_demo.clients() if c.client_id == "gp-system")
        partner, _ = services.auth.tokens.access_token(scope=gp.ceiling.grant(ScopeSet(gp.ceiling.resource)),
                                                       client_id=gp.client_id, client=gp, ttl=7200)
        patients = {}
        for k, pid in enumerate(pop.patients):
            user = User(username=f"patient.load{k}", kind="patient", scope=CEILINGS["patient"],
                        fhir_user=f"Patient/{pid}", patient=pid, roles=frozenset({"patient"}))
            patients[pid] = token_for_identity(services, user, ttl=7200)
    finally:
        services.db.dispose()
    return workload.Tokens(nurse=tok["nurse.nina"], social=tok["social.sam"], ig=tok["ig.iris"], partner=partner,
                           patients=patients)


def check_acked(url: str, acked: workload.Acked) -> dict[str, Any]:
    """Every write acknowledged with a 2xx is in the database (resources, assessment versions) and so is its
    audit row (by the X-Request-Id the answer carried)."""
    from sqlalchemy import bindparam, create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    missing_res: list[str] = []
    missing_versions: list[str] = []
    missing_audit: list[str] = []
    with engine.connect() as conn:
        keys = [tuple(k.split("/", 1)) for k in acked.resources]
        present: set[tuple[str, str]] = set()
        q = text("SELECT res_type, res_id FROM resource WHERE res_id IN :ids AND NOT deleted").bindparams(
            bindparam("ids", expanding=True))
        for n in range(0, len(keys), 1000):
            chunk = keys[n:n + 1000]
            present |= {(t, i) for t, i in conn.execute(q, {"ids": [i for _t, i in chunk]})}
        missing_res = [f"{t}/{i}" for t, i in keys if (t, i) not in present]
        for key, v in acked.versions.items():
            rid = key.split("/", 1)[1]
            got = conn.execute(text("SELECT version FROM resource WHERE res_type = 'QuestionnaireResponse' "
                                    "AND res_id = :i"), {"i": rid}).scalar()
            if got is None or got < v:
                missing_versions.append(f"{key} (acknowledged v{v}, stored v{got})")
        ids = [r for r in acked.request_ids if r]
        seen: set[str] = set()
        qa = text("SELECT request_id FROM audit_log WHERE request_id IN :ids").bindparams(
            bindparam("ids", expanding=True))
        for n in range(0, len(ids), 1000):
            seen |= {r for (r,) in conn.execute(qa, {"ids": ids[n:n + 1000]})}
        missing_audit = [r for r in ids if r not in seen]
    engine.dispose()
    return {"acked_resources": len(keys), "missing_resources": missing_res[:20], "n_missing_resources": len(missing_res),
            "acked_versions": len(acked.versions), "missing_versions": missing_versions[:20],
            "acked_writes": len(ids), "missing_audit_rows": len(missing_audit)}


def _reference(app: str, env: dict[str, str], tmp: Path, users: int, seconds: float) -> tuple[OpStats, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "uvicorn"), "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log", f"bench.reference_apps:{app}"]
    with serving(cmd, {**os.environ, **env}, base + "/fhir/Patient/pat-pat", tmp / f"{app}.log"):
        return asyncio.run(workload.drive_reference(base + "/fhir/Patient/pat-pat", users, seconds))


def measure(opts: Options) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sc-load-") as name:
        tmp = Path(name)
        with seeded_database(opts, tmp) as (url, seed):
            port = free_port()
            env = _env(url, tmp, port)
            cli([str(BIN / "sharedcare"), "db", "upgrade"], env)
            pop = population_of(url, opts.mix.patients)
            tokens = tokens_for(url, tmp, port, pop)
            base, logfile = f"http://127.0.0.1:{port}", tmp / "service.log"
            cmd = [str(BIN / "sharedcare"), "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(opts.workers)]
            log(f"serving {seed['database']} with {opts.workers} workers; {opts.mix.users} users for "
                f"{opts.duration:.0f}s")
            with serving(cmd, env, base + "/readyz", logfile):
                run = asyncio.run(workload.drive(base, tokens, pop, opts.mix, opts.duration))
            checked = check_acked(url, run.acked)
            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            body = tmp / "pat-pat.json"
            from bench.http_servers import stored_content

            body.write_bytes(stored_content(url))
            refs = {"minimal": _reference("minimal", {"BENCH_REF_DSN": dsn}, tmp, opts.mix.users, opts.ref_seconds),
                    "bare": _reference("bare", {"BENCH_REF_BODY": str(body)}, tmp, opts.mix.users,
                                       opts.ref_seconds)}
            errors_logged = log_errors(logfile)
    ops = {op: s.summary(run.seconds) for op, s in run.stats.items()}
    ref = {k: stats.summary(took) for k, (stats, took) in refs.items()}
    total = sum(o["requests"] for o in ops.values()) / run.seconds if run.seconds else 0.0
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0],
            "patients": opts.patients, "clinical_per_patient": opts.clinical, "seed": seed,
            "server_workers": opts.workers, "users": opts.mix.__dict__, "seconds": run.seconds,
            "operations": ops, "total_rps": total, "references": ref, "acknowledged": checked,
            "service_log_error_lines": errors_logged}


def table(f: dict[str, Any]) -> list[str]:
    seed = f["seed"]
    mini = f["references"]["minimal"]["rps"] or 1.0
    how = "cloned from the template seeded earlier" if seed["cached"] else "cloned from the template seeded just now"
    lines = [
        (f"population: {f['patients']} patients, {seed['resources']} resources ({seed['through_pipeline']} through "
         f"the pipeline's transactions, {seed['copied']} clinical by COPY) in {seed['seconds']:.0f}s by "
         f"{seed['workers']} processes ({seed['resources'] / seed['seconds']:.0f}/s); this run's database {how} in "
         f"{seed['clone_s']:.1f}s"),
        (f"load: {sum(f['users'].values())} users (closed loops, no think time) for {f['seconds']:.0f}s against "
         f"`sharedcare serve --workers {f['server_workers']}` on PostgreSQL; {f['cpus']} CPUs shared by the client, "
         f"the servers and PostgreSQL; load average {f['loadavg_1min_before']:.1f} before, "
         f"{f['loadavg_1min_after']:.1f} after"),
        f"{'operation':26s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>7s} {'x minimal':>9s}"]
    for op, r in f["operations"].items():
        lines.append(f"{op:26s} {r['rps']:8.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} "
                     f"{r['errors']:7d} {r['rps'] / mini:8.3f}x")
        for sample in r["error_samples"]:
            lines.append(f"{'':26s}   e.g. {sample[:160]}")
    lines.append(f"{'all operations':26s} {f['total_rps']:8.1f} {'':8s} {'':8s} {'':8s} "
                 f"{sum(r['errors'] for r in f['operations'].values()):7d} {f['total_rps'] / mini:8.3f}x")
    for name, r in f["references"].items():
        lines.append(f"{'reference ' + name:26s} {r['rps']:8.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
                     f"{r['p99_ms']:8.1f} {r['errors']:7d}")
    a = f["acknowledged"]
    lines.append(f"acknowledged writes: {a['acked_writes']} ({a['acked_resources']} resources, {a['acked_versions']} "
                 f"assessments); missing afterwards: {a['n_missing_resources']} resources, "
                 f"{len(a['missing_versions'])} assessment versions, {a['missing_audit_rows']} audit rows")
    if f["service_log_error_lines"]:
        lines.append(f"the service logged {f['service_log_error_lines']} error lines")
    lines.append("(x minimal: the operation's req/s over the minimal Starlette + psycopg app's, a primary-key read "
                 "+ audit insert + commit, driven by the same client with as many users)")
    return lines


def run(opts: Options) -> list[str]:
    figures = measure(opts)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "load.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return [*table(figures), f"figures written to {out}"]
