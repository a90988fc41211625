"""Run every registered benchmark module and print its figures.

    python -m bench.run [--quick] [--backend sqlite|postgresql|both] [--only NAME] [--patients N] [--ops N]

A benchmark module exposes `NAME` and `run(args) -> list[str]` (the lines of its table) and is listed
in MODULES. PostgreSQL benchmarks create their own database (dropped afterwards) through the admin
URL SHAREDCARE_BENCH_PG_URL (default: the test suite's, postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

MODULES = ["bench.http_bench", "bench.search_bench", "bench.export_bench", "bench.validation_bench", "bench.load"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and few requests (a smoke run)")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--only", action="append", default=[], help="run only the benchmark with this NAME")
    p.add_argument("--patients", type=int, default=None, help="patients stored before timing (default 10000)")
    p.add_argument("--ops", type=int, default=None, help="requests per measured interaction (default 2000)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    args = p.parse_args(argv)
    if args.patients is None:
        args.patients = 1000 if args.quick else 10_000
    if args.ops is None:
        args.ops = 200 if args.quick else 2000
    args.backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    failed = 0
    for name in MODULES:
        mod = importlib.import_module(name)
        if args.only and mod.NAME not in args.only:
            continue
        print(f"== {mod.NAME}: {mod.__doc__.strip().splitlines()[0] if mod.__doc__ else ''}", flush=True)
        started = time.perf_counter()
        try:
            for line in mod.run(args):
                print(line, flush=True)
        except Exception as exc:  # noqa: BLE001  (one broken benchmark must not hide the others' figures)
            failed += 1
            print(f"!! {mod.NAME} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"== {mod.NAME} done in {time.perf_counter() - started:.0f}s\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
