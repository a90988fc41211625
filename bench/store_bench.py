"""Record store: read, create and update throughput with p50/p99 latency over >= 10,000 stored patients, and the
Synthea transaction import rate, on SQLite and PostgreSQL.

In process: the real ASGI app (HTTP adapter, pipeline, handlers, search indexing, audit) driven through
Starlette's TestClient from a bounded pool of threads; the caller is the trusted system context (the
identity layer's token check is not part of what this measures). Each backend gets a fresh database:
an SQLite file in a temporary folder, or a new PostgreSQL database that is dropped afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

NAME = "store"
PG_ADMIN_URL = os.environ.get("SHAREDCARE_BENCH_PG_URL",
                              os.environ.get("SHAREDCARE_TEST_PG_URL",
                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
FHIR = {"Content-Type": "application/fhir+json"}


@contextmanager
def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
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


def _patient(i: int) -> dict[str, Any]:
    rnd = random.Random(i)
    return {"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": f"MRN{i:08d}"}],
            "name": [{"family": rnd.choice(["Smith", "Jones", "Patel", "Nowak", "Okafor"]),
                      "given": [rnd.choice(["Ann", "Bo", "Chidi", "Zoë", "Łucja"])]}],
            "gender": rnd.choice(["female", "male", "other", "unknown"]),
            "birthDate": f"{1930 + i % 90}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "address": [{"line": [f"{i % 300} High Street"], "city": "Leeds", "postalCode": "LS1 4AB"}]}


def _bulk_load(services: Any, n: int) -> tuple[list[str], float]:
    """Store n patients straight through the store (with its write listeners), 1,000 per transaction."""
    from service.fhir.validation import validate_resource

    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, n, 1000):
        with services.db.write() as conn:
            for i in range(start, min(n, start + 1000)):
                res = _patient(i)
                validate_resource(res)
                ids.append(services.store.create(conn, res).res_id)
    return ids, time.perf_counter() - started


def _measure(ops: int, concurrency: int, call: Callable[[int], Any]) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0

    def one(i: int) -> tuple[float, int]:
        t = time.perf_counter()
        r = call(i)
        return time.perf_counter() - t, r.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for lat, status in pool.map(one, range(ops)):
            latencies.append(lat)
            errors += status >= 400
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"rps": ops / wall, "p50": q[49] * 1000, "p99": q[98] * 1000, "errors": errors}


def _row(backend: str, what: str, ops: int, conc: int, m: dict[str, float]) -> str:
    return (f"{backend:<11} {what:<8} {ops:>6} {conc:>5} {m['rps']:>9.0f} {m['p50']:>8.1f} {m['p99']:>8.1f} "
            f"{int(m['errors']):>6}")


def bench_backend(backend: str, args: Any) -> list[str]:
    from fastapi.testclient import TestClient

    from service.api.app import build_services, create_app
    from service.config import load_settings
    from service.migrate import upgrade

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sc-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with fresh_database(backend, tmp) as url:
            upgrade(url)
            settings = replace(load_settings(), database_url=url, base_url="http://bench", var_dir=tmp,
                               keys_dir=tmp / "keys", demo=True)
            services = build_services(settings)
            services.extras.pop("authenticate", None)  # the trusted system caller (see the module docstring)
            try:
                ids, load_s = _bulk_load(services, args.patients)
                lines.append(f"{backend:<11} bulk load {args.patients} patients: {load_s:.1f}s "
                             f"({args.patients / load_s:.0f} resources/s, store + indexing, 1,000 per transaction)")
                conc = args.concurrency
                with TestClient(create_app(settings, services=services), base_url="http://bench") as client:
                    rnd = random.Random(1)
                    picks = [rnd.choice(ids) for _ in range(args.ops)]
                    client.get(f"/fhir/Patient/{ids[0]}")  # warm up
                    read = _measure(args.ops, conc, lambda i: client.get(f"/fhir/Patient/{picks[i]}"))
                    create = _measure(args.ops, conc, lambda i: client.post(
                        "/fhir/Patient", content=orjson.dumps(_patient(args.patients + i)), headers=FHIR))
                    upd_ids = rnd.sample(ids, min(args.ops, len(ids)))

                    def put(i: int) -> Any:
                        rid = upd_ids[i % len(upd_ids)]
                        body = {**_patient(i), "id": rid, "gender": "unknown"}
                        return client.put(f"/fhir/Patient/{rid}", content=orjson.dumps(body), headers=FHIR)

                    update = _measure(args.ops, conc, put)
                    lines += [_row(backend, "read", args.ops, conc, read),
                              _row(backend, "create", args.ops, conc, create),
                              _row(backend, "update", args.ops, conc, update)]
                    lines.append(_synthea(backend, client))
            finally:
                services.db.dispose()
    return lines


def _synthea(backend: str, client: Any) -> str:
    folder = DATA / "synthea-r4"
    files = sorted(folder.glob("*.json"), key=lambda p: (p.name not in ("hospitals.json", "practitioners.json"),
                                                         p.name))
    bodies = [p.read_bytes() for p in files]
    total = sum(len(orjson.loads(b)["entry"]) for b in bodies)
    started = time.perf_counter()
    for path, body in zip(files, bodies, strict=True):
        r = client.post("/fhir", content=body, headers={**FHIR, "Prefer": "return=minimal"})
        if r.status_code != 200:
            raise RuntimeError(f"Synthea {path.name}: {r.status_code} {r.text[:300]}")
    wall = time.perf_counter() - started
    return (f"{backend:<11} Synthea: {len(files)} transaction bundles, {total} resources in {wall:.1f}s = "
            f"{total / wall:.0f} resources/s (one bundle at a time)")


def run(args: Any) -> list[str]:
    header = (f"{'backend':<11} {'what':<8} {'ops':>6} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'errors':>6}")
    out = [f"{args.patients} patients stored before timing; {args.concurrency} requests in flight", header]
    for backend in args.backends:
        out += bench_backend(backend, args)
    return out
