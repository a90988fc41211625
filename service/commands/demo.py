"""`sharedcare demo load`: load the demo organisations, people and records (idempotent). A progress bar while it
loads when stderr is a terminal (service/commands/progress.py); then one summary line."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="demo data")
    dsub = p.add_subparsers(dest="demo_command", required=True)
    load = dsub.add_parser("load", help="load the demo data (safe to run again)")
    load.set_defaults(func=load_demo)


def published_forms(services: Any) -> int:
    """How many of the service's packaged forms the record holds now (published at start or by this load)."""
    from service.repository import Repository
    from service.workflows.forms import current_packaged

    with Repository.job(services) as server:
        return sum(1 for q in current_packaged() if server.get("Questionnaire", q["id"]) is not None)


def load_demo(args: argparse.Namespace) -> int:
    from service.bootstrap import build_services
    from service.commands.progress import Bar
    from service.config import get_settings
    from service.demo.loader import write_records
    from service.demo.records import records

    services = build_services(get_settings())
    try:
        demo = list(records())
        with Bar("loading the demo records", total=len(demo) + len(services.loaders)) as bar:
            summary = write_records(services, bar.each(demo))
            bar.describe("loading the demo identities and forms")
            for step in services.loaders:
                summary.update(step(services))
                bar.advance()
        summary["questionnaires published"] = published_forms(services)
    finally:
        services.db.dispose()
    print("demo data: " + ", ".join(f"{k} {v}" for k, v in summary.items()), file=sys.stderr)
    return 0
