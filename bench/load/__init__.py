"""Load: a mixed workload of real users (nurse, social worker, patient, partner system, IG lead) on PostgreSQL.

    python -m bench.load [--patients 10000] [--duration 60] [--workers 2] [--clinical 8] [--fresh] [--keep]
    make bench BENCH_ARGS="--only load [--quick]"

Seeds (once: later runs clone the seeded template database `sc_load_tpl_<key>`) N patients with care teams,
consents, care plans and joint assessments plus Synthea-shaped clinical data (bench/load/population.py), serves
them with `sharedcare serve --workers N`, runs the workload (bench/load/workload.py) and, in the same run, the
minimal Starlette + psycopg app and the bare app of bench/reference_apps.py with the same client; prints per
operation req/s, p50/p95/p99, errors and the ratio to the minimal app; checks that every acknowledged write and
its audit row are stored. Figures also go to var/bench/load.json.
"""

from __future__ import annotations

import argparse
import os

NAME = "load"


def options(argv: list[str] | None = None) -> object:
    from bench.load.harness import Options
    from bench.load.workload import Mix

    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=10_000)
    p.add_argument("--clinical", type=int, default=8, help="Synthea clinical resources per patient (default 8)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of measured load (default 60)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    p.add_argument("--seed-workers", type=int, default=2, help="processes seeding the population (default 2)")
    p.add_argument("--users", type=str, default="10,6,8,4,4",
                   help="nurses,social workers,patients,partners,IG leads (default 10,6,8,4,4: 32 users)")
    p.add_argument("--ref-seconds", type=float, default=15.0, help="seconds per reference app (default 15)")
    p.add_argument("--fresh", action="store_true", help="seed again even if the seeded template exists")
    p.add_argument("--keep", action="store_true", help="keep this run's database")
    a = p.parse_args(argv)
    mix = Mix(*[int(x) for x in a.users.split(",")])
    return Options(patients=a.patients, clinical=a.clinical, duration=a.duration, workers=a.workers,
                   seed_workers=a.seed_workers, mix=mix, ref_seconds=a.ref_seconds, fresh=a.fresh, keep=a.keep)


def run(args: argparse.Namespace) -> list[str]:
    """For bench.run: PostgreSQL only; --patients (default 10,000; --quick 1,000), 60 s (--quick 15 s;
    SHAREDCARE_BENCH_LOAD_SECONDS overrides)."""
    from bench.load.harness import Options
    from bench.load.harness import run as run_load

    if "postgresql" not in args.backends:
        return ["(the load benchmark runs on PostgreSQL only)"]
    seconds = float(os.environ.get("SHAREDCARE_BENCH_LOAD_SECONDS", "15" if args.quick else "60"))
    return run_load(Options(patients=args.patients, duration=seconds, ref_seconds=5 if args.quick else 15))


def main(argv: list[str] | None = None) -> int:
    from bench.load.harness import run as run_load

    for line in run_load(options(argv)):  # type: ignore[arg-type]
        print(line, flush=True)
    return 0
