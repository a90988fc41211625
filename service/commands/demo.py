"""`sharedcare demo load`: load the demo organisations, people and records (idempotent)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="demo data")
    dsub = p.add_subparsers(dest="demo_command", required=True)
    load = dsub.add_parser("load", help="load the demo data (safe to run again)")
    load.set_defaults(func=load_demo)


def load_demo(args: argparse.Namespace) -> int:
    from service.bootstrap import build_services
    from service.config import get_settings
    from service.demo.loader import load_records

    services = build_services(get_settings())
    summary = load_records(services)
    for step in services.loaders:
        summary.update(step(services))
    services.db.dispose()
    print("demo data: " + ", ".join(f"{k} {v}" for k, v in summary.items()), file=sys.stderr)
    return 0
