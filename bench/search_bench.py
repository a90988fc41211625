"""Search: p50/p99 latency and throughput of the common searches over a generated, Synthea-shaped
population (default 100,000 patients and ~1,000,000 other resources), on SQLite and PostgreSQL.

    python -m bench.search_bench [--patients N] [--backend sqlite|postgresql|both] [--ops N]
    make bench BENCH_ARGS="--only search"        # the issue's size: 100,000 patients
    SHAREDCARE_BENCH_SEARCH_PATIENTS=20000 make bench BENCH_ARGS="--only search"

The population is generated once (worker processes build each batch: the store's canonical JSON and
the indexer's own extraction, the same rows the write listener makes) and bulk-inserted into every
backend (COPY on PostgreSQL). Requests go through the real pipeline (router, handlers, search engine,
audit hook) in process, as the trusted system context. Also reports the indexing cost per resource.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NAME = "search"
PG_ADMIN_URL = os.environ.get("SHAREDCARE_BENCH_PG_URL", os.environ.get(
    "SHAREDCARE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FAMILIES = ["Smith", "Jones", "Patel", "Nowak", "Okafor", "Williams", "Brown", "Taylor", "Davies", "Evans",
            "Thomas", "Roberts", "Khan", "Lewis", "Walker", "Wright", "Müller", "Ñúñez", "O'Brien", "Hughes"]


def _patient(i: int) -> dict[str, Any]:
    rnd = random.Random(i)
    return {"resourceType": "Patient",
            "identifier": [{"system": NHS, "value": f"9{i:09d}"}],
            "name": [{"use": "official", "family": f"{rnd.choice(FAMILIES)}{i % 997}",
                      "given": [rnd.choice(["Ann", "Bo", "Chidi", "Zoë", "Łucja", "Sam"])]}],
            "gender": rnd.choice(["female", "male"]), "birthDate": f"{1930 + i % 90}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "address": [{"line": [f"{i % 300} High Street"], "city": "Leeds", "postalCode": "LS1 4AB"}]}


def _others(pid: str, i: int, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(-i - 1)
    out: list[dict[str, Any]] = []
    for k in range(n):
        kind = k % 10
        if kind in (0, 1):
            out.append({"resourceType": "CarePlan", "status": rnd.choice(["active", "completed", "draft"]),
                        "intent": "plan", "subject": {"reference": f"Patient/{pid}"},
                        "period": {"start": f"20{10 + rnd.randrange(15)}-0{1 + rnd.randrange(9)}-15"},
                        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000"}]}]})
        elif kind == 2:
            out.append({"resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                        "subject": {"reference": f"Patient/{pid}"},
                        "period": {"start": f"20{10 + rnd.randrange(15)}-03-0{1 + rnd.randrange(9)}T09:00:00Z",
                                   "end": f"20{10 + rnd.randrange(15)}-03-0{1 + rnd.randrange(9)}T10:00:00Z"}})
        elif kind == 3:
            out.append({"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": rnd.choice(
                            ["44054006", "38341003", "195967001"])}]},
                        "onsetDateTime": f"20{rnd.randrange(25):02d}-06-01"})
        else:
            out.append({"resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": rnd.choice(
                            ["29463-7", "8302-2", "8867-4", "4548-4"])}]},
                        "subject": {"reference": f"Patient/{pid}"},
                        "effectiveDateTime": f"20{10 + rnd.randrange(15)}-{1 + rnd.randrange(12):02d}-"
                                             f"{1 + rnd.randrange(28):02d}T08:00:00Z",
                        "valueQuantity": {"value": round(rnd.uniform(40, 120), 1), "unit": "kg",
                                          "system": "http://unitsofmeasure.org", "code": "kg"}})
    return out


def _batch(job: tuple[int, int, int, int, str, int]) -> tuple[list[str], dict[str, tuple[list[str], list[tuple]]],
                                                             int, float]:
    """Build patients [start, stop) and their resources: stored rows and index rows (the indexer's own
    extraction), as column lists and row tuples per table. Runs in a worker process."""
    import orjson

    from service.search import indexer
    from service.storage.store import canonical, new_id

    start, stop, per_patient, big, base, lu = job
    pids: list[str] = []
    res_rows: list[tuple] = []
    idx: dict[str, list[dict[str, Any]]] = {}
    t_extract = 0.0
    for i in range(start, stop):
        pid = new_id()
        pids.append(pid)
        for res in [_patient(i)] + _others(pid, i, big if i == 0 else per_patient):
            rid = pid if res["resourceType"] == "Patient" else new_id()
            content = canonical(res, rid, 1, lu)
            t0 = time.perf_counter()
            indexer.merge(idx, indexer.index_rows(res["resourceType"], rid, orjson.loads(content), base))
            t_extract += time.perf_counter() - t0
            res_rows.append((res["resourceType"], rid, 1, lu, False, content.decode()))
            lu += 1
    tables: dict[str, tuple[list[str], list[tuple]]] = {
        "resource": (["res_type", "res_id", "version", "last_updated", "deleted", "content"], res_rows)}
    for name, rows in idx.items():
        if rows:
            cols = list(rows[0])
            tables[name] = (cols, [tuple(r[c] for c in cols) for r in rows])
    return pids, tables, len(res_rows), t_extract


def _insert(services: Any, tables: dict[str, tuple[list[str], list[tuple]]]) -> None:
    """Bulk insert one batch: COPY on PostgreSQL, executemany on SQLite; `resource_version` gets the same
    rows as `resource` (method POST)."""
    from sqlalchemy import insert

    from service.search.tables import INDEX_TABLES, sp_compartment
    from service.storage.tables import resource as R
    from service.storage.tables import resource_version as V

    def table_of(name: str) -> Any:
        return {"resource": R, "compartment": sp_compartment}[name] if name in ("resource", "compartment") \
            else INDEX_TABLES[name]

    with services.db.write() as conn:
        work = list(tables.items())
        cols, rows = tables["resource"]
        work.append(("resource_version", ([*cols, "method"], [(*r, "POST") for r in rows])))
        if services.db.is_postgres:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                for name, (cols, rows) in work:
                    tname = V.name if name == "resource_version" else table_of(name).name
                    with cur.copy(f"COPY {tname} ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        else:
            for name, (cols, rows) in work:
                table = V if name == "resource_version" else table_of(name)
                conn.execute(insert(table), [dict(zip(cols, r, strict=True)) for r in rows])


def generate(all_services: list[Any], patients: int, per_patient: int, big_patient_resources: int,
             log: Any = print, workers: int | None = None) -> dict[str, Any]:
    """Bulk-load the same population into every backend at once (generated and indexed once, in worker
    processes). Returns figures and the ids the benchmark queries."""
    from concurrent.futures import ProcessPoolExecutor

    base = all_services[0].settings.fhir_base
    batch_size = 500
    lu0 = int(time.time() * 1_000_000) - 10 ** 12
    jobs = []
    for start in range(0, patients, batch_size):
        before = start * (per_patient + 1) + (big_patient_resources - per_patient if start > 0 else 0)
        jobs.append((start, min(patients, start + batch_size), per_patient, big_patient_resources, base,
                     lu0 + before))
    started = time.perf_counter()
    pids: list[str] = []
    n_res, t_extract = 0, 0.0
    t_load = {id(s): 0.0 for s in all_services}
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        for k, (got, tables, n, te) in enumerate(pool.map(_batch, jobs)):
            pids += got
            n_res += n
            t_extract += te
            for services in all_services:
                t0 = time.perf_counter()
                _insert(services, tables)
                t_load[id(services)] += time.perf_counter() - t0
            if k % 20 == 0:
                log(f"   loaded {len(pids)} patients, {n_res} resources ({time.perf_counter() - started:.0f}s)")
    for services in all_services:
        t0 = time.perf_counter()
        if services.db.is_postgres:  # autocommit: an ANALYZE inside a transaction that is not committed is lost
            with services.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        else:
            with services.db.write() as conn:
                conn.exec_driver_sql("ANALYZE")
        t_load[id(services)] += time.perf_counter() - t0
    return {"pids": pids, "resources": n_res, "load_s": time.perf_counter() - started,
            "extract_us": t_extract / n_res * 1e6, "insert_s": t_load, "workers": workers}


@contextmanager
def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
    """An SQLite file in `tmp`, or a new PostgreSQL database (dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    admin = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    name = f"sc_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _measure(services: Any, make: Any, ops: int, concurrency: int) -> tuple[float, float, float, int]:
    from service.access.context import RequestContext
    from service.api.pipeline import handle

    ctx = RequestContext.system()
    lat: list[float] = []
    sizes = []
    for i in range(ops):
        req = make(i)
        t0 = time.perf_counter()
        resp = handle(req, services, ctx)
        lat.append(time.perf_counter() - t0)
        assert resp.status == 200, resp.body
        sizes.append(len(resp.body or b""))
    lat.sort()

    def one(i: int) -> None:
        handle(make(i), services, ctx)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(ops)))
    rps = ops / (time.perf_counter() - t0)
    return lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, rps, int(
        statistics.mean(sizes))


def _searches(services: Any, backend: str, pids: list[str], ops: int, concurrency: int) -> list[str]:
    import orjson

    from service.access.context import RequestContext
    from service.api.pipeline import handle
    from service.fhir.request import FhirRequest

    patients = len(pids)
    rnd = random.Random(1)
    pick = lambda: rnd.randrange(patients)
    cases = [
        ("read Patient/{id}", lambda i: FhirRequest("GET", f"Patient/{pids[pick()]}")),
        ("Patient?identifier=nhs|…", lambda i: FhirRequest(
            "GET", "Patient", params=[("identifier", f"{NHS}|9{pick():09d}")])),
        ("Patient?name=<prefix>", lambda i: FhirRequest(
            "GET", "Patient", params=[("name", f"{FAMILIES[i % 20].lower()}{i % 997}")])),
        ("CarePlan?subject=…&status=active", lambda i: FhirRequest(
            "GET", "CarePlan", params=[("subject", f"Patient/{pids[pick()]}"), ("status", "active")])),
        ("Observation?subject=…&date=ge2018", lambda i: FhirRequest(
            "GET", "Observation", params=[("subject", f"Patient/{pids[pick()]}"), ("date", "ge2018-01-01")])),
        ("Patient?_id=…&_revinclude=CarePlan:subject", lambda i: FhirRequest(
            "GET", "Patient", params=[("_id", pids[pick()]), ("_revinclude", "CarePlan:subject")])),
        ("Patient/{500 res}/$everything?_count=100 (first page)", lambda i: FhirRequest(
            "GET", f"Patient/{pids[0]}/$everything", params=[("_count", "100")])),
    ]
    lines = [f"{backend:10s} {'search':54s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s} {'bytes':>8s}"]
    for name, make in cases:
        n = max(20, ops // 5) if "everything" in name else ops
        p50, p99, rps, size = _measure(services, make, n, concurrency)
        lines.append(f"{backend:10s} {name:54s} {p50:8.2f} {p99:8.2f} {rps:8.0f} {size:8d}")
    # the whole $everything for the 500-resource patient, following next links
    from urllib.parse import parse_qsl

    t0 = time.perf_counter()
    req = FhirRequest("GET", f"Patient/{pids[0]}/$everything", params=[("_count", "100")])
    got = 0
    while True:
        body = orjson.loads(handle(req, services, RequestContext.system()).body)
        got += sum(1 for e in body.get("entry", []) if e["search"]["mode"] == "match")
        nxt = [lk["url"] for lk in body["link"] if lk["relation"] == "next"]
        if not nxt:
            break
        req = FhirRequest("GET", f"Patient/{pids[0]}/$everything", params=parse_qsl(nxt[0].split("?", 1)[1]))
    lines.append(f"{backend:10s} $everything, all pages (_count=100): {got} resources in "
                 f"{(time.perf_counter() - t0) * 1000:.0f} ms")
    return lines


def bench(backends: list[str], patients: int, ops: int, concurrency: int, log: Any = print,
          per_patient: int = 10, big: int = 500) -> list[str]:
    """Load one generated population into every backend, then time the searches on each in turn."""
    from contextlib import ExitStack

    from service.bootstrap import build_services
    from service.config import load_settings
    from service.migrate import upgrade

    lines = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        all_services = []
        for backend in backends:
            url = stack.enter_context(fresh_database(backend, Path(tmp)))
            upgrade(url)
            settings = load_settings(database_url=url, var_dir=Path(tmp), keys_dir=Path(tmp) / "keys")
            services = build_services(settings)
            stack.callback(services.db.dispose)
            all_services.append(services)
        g = generate(all_services, patients, per_patient, big, log)
        lines.append(f"population: {patients} patients, {g['resources']} resources (Synthea-shaped; one patient "
                     f"with {big}), generated and indexed once by {g['workers']} worker processes in "
                     f"{g['load_s']:.0f}s; index extraction {g['extract_us']:.0f} us/resource")
        for backend, services in zip(backends, all_services, strict=True):
            lines.append(f"{backend}: bulk insert {g['insert_s'][id(services)]:.0f}s "
                         f"({g['resources'] / g['insert_s'][id(services)]:.0f} resources/s with their index rows)")
        for backend, services in zip(backends, all_services, strict=True):
            lines += _searches(services, backend, g["pids"], ops, concurrency)
    return lines


def run(args: argparse.Namespace) -> list[str]:
    """For bench.run: the issue's size (100,000 patients, ~1,000,000 other resources) unless --quick;
    `python -m bench.search_bench --patients N` for another size."""
    patients = getattr(args, "search_patients", None) or int(os.environ.get(
        "SHAREDCARE_BENCH_SEARCH_PATIENTS", "2000" if args.quick else "100000"))
    return bench(args.backends, patients, min(args.ops, 500), args.concurrency,
                 log=lambda s: print(s, file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=100_000,
                   help="patients, each with 10 other resources (default 100,000: the issue's size)")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--ops", type=int, default=300, help="requests per search")
    p.add_argument("--concurrency", type=int, default=4)
    a = p.parse_args(argv)
    a.backends = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]
    a.search_patients, a.quick = a.patients, False
    for line in run(a):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
