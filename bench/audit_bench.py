"""The cost of audit on the hot path: authorised read and search with audit on versus off, in one run.

    .venv/bin/python bench/audit_bench.py [--database-url URL] [--rounds N] [--requests N]

Runs the real request pipeline in process (authenticate -> route -> unit of work -> guard -> handler ->
audit), with an authorised context, against a fresh database (a temporary SQLite file by default, or the
PostgreSQL database given, which must be empty and migrated or migratable). "off" is the same Services
without the audit hooks. Rounds alternate on/off so drift affects both. Prints per-request medians and
the ratio on/off (target: under 1.5x together with consent; goal 1.2x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _context() -> Any:
    from service.access.context import Principal, RequestContext

    try:
        from service.auth.scopes import ScopeSet

        scopes: Any = ScopeSet.parse("user/*.cruds system/*.cruds")
    except ImportError:
        scopes = None
    principal = Principal(subject="bench.nurse", kind="admin", client_id="bench", fhir_user="Practitioner/bench",
                          organisation="Organization/bench", ods_code="RX1", role_code="R8001",
                          roles=frozenset({"admin", "clinician"}), scopes=scopes)
    return RequestContext(principal, remote_addr="127.0.0.1")


def _load(services: Any, patients: int, per_patient: int) -> list[str]:
    ids = []
    with services.db.write() as conn:
        for i in range(patients):
            p = services.store.create(conn, {"resourceType": "Patient", "gender": "female",
                                             "name": [{"family": f"Bench{i}", "given": ["Jo"]}]})
            ids.append(p.res_id)
            for j in range(per_patient):
                services.store.create(conn, {"resourceType": "Observation", "status": "final",
                                             "code": {"text": f"obs {j}"},
                                             "subject": {"reference": f"Patient/{p.res_id}"}})
    return ids


def _time(services: Any, ctx: Any, reqs: list[Any]) -> list[float]:
    from service.api.pipeline import handle

    out = []
    for req in reqs:
        t0 = time.perf_counter()
        resp = handle(req, services, ctx)
        out.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"benchmark request {req.method} {req.path} failed: {resp.status} {resp.body!r}")
    return out


NAME = "audit"


def measure(url: str, tmp: str, rounds: int, requests: int) -> list[str]:
    from service.api.app import build_services
    from service.config import load_settings
    from service.interactions.request import FhirRequest
    from service.migrate import upgrade

    upgrade(url)
    settings = replace(load_settings(), database_url=url, var_dir=Path(tmp), keys_dir=Path(tmp) / "keys")
    on = build_services(settings)
    off = replace(on, extras={k: v for k, v in on.extras.items() if not k.startswith("audit")})
    ctx = _context()
    try:
        pids = _load(on, 50, 5)
        if on.db.is_postgres:  # statistics, as autovacuum would gather them on a live database
            from sqlalchemy import text

            with on.db.write() as conn:
                conn.execute(text("ANALYZE"))
        kinds = {
            "read": [FhirRequest("GET", f"Patient/{pids[i % len(pids)]}") for i in range(requests)],
            "search": [FhirRequest("GET", "Observation", params=[("subject", f"Patient/{pids[i % len(pids)]}")])
                       for i in range(requests)],
        }
        for reqs in kinds.values():  # warm up both paths
            _time(on, ctx, reqs[:20])
            _time(off, ctx, reqs[:20])
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for kind, reqs in kinds.items():
                for label, svc in (("off", off), ("on", on)):
                    results.setdefault((kind, label), []).extend(_time(svc, ctx, reqs))
        title = (f"audit cost on the hot path ({on.db.dialect}, {rounds} rounds x {requests} requests, "
                 "pipeline in process, authorised context)")
        lines = [title]
        total_on = total_off = 0.0
        for kind in kinds:
            med_off = statistics.median(results[(kind, "off")]) * 1000
            med_on = statistics.median(results[(kind, "on")]) * 1000
            total_on += med_on
            total_off += med_off
            lines.append(f"  {kind:7s} audit off {med_off:7.3f} ms   audit on {med_on:7.3f} ms   "
                         f"ratio {med_on / med_off:5.2f}x   audit adds {med_on - med_off:6.3f} ms")
        lines.append(f"  read+search ratio (medians) {total_on / total_off:5.2f}x  (target < 1.5x with consent)")
        return lines
    finally:
        on.db.dispose()


def run(args: Any) -> list[str]:
    """Entry point for bench/run.py (args.backends, args.quick, args.ops)."""
    from bench.store_bench import fresh_database

    requests = 100 if args.quick else min(args.ops, 500)
    lines: list[str] = []
    for backend in args.backends:
        tmp = tempfile.mkdtemp(prefix="audit-bench-")
        with fresh_database(backend, Path(tmp)) as url:
            lines += measure(url, tmp, 2 if args.quick else 5, requests)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--database-url", default=None, help="an empty database (default: a temporary SQLite file)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200, help="requests of each kind per round")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="audit-bench-")
    for line in measure(args.database_url or f"sqlite:///{tmp}/bench.db", tmp, args.rounds, args.requests):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
