"""`sharedcare search reindex [--type T]`: rebuild the search indexes from the stored resources.

Needed after adding a custom search parameter or upgrading the compiled definitions. Works in batches
(one write transaction each), so it can run beside a live server; each resource's rows are replaced
atomically with its batch. A progress bar while it runs when stderr is a terminal (service/commands/progress.py);
then one summary line.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search index administration")
    ssub = p.add_subparsers(dest="search_command", required=True)
    re_ = ssub.add_parser("reindex", help="rebuild the search indexes for existing data")
    re_.add_argument("--type", dest="rtype", default=None, help="only this resource type")
    re_.set_defaults(func=reindex)


def reindex(args: argparse.Namespace) -> int:
    from service.config import get_settings
    from service.db import Database
    from service.fhir.types import RESOURCE_TYPES

    if args.rtype is not None and args.rtype not in RESOURCE_TYPES:
        print(f"unknown resource type {args.rtype!r}", file=sys.stderr)
        return 2
    from service.bootstrap import build_services

    settings = get_settings()
    services = build_services(settings, Database(settings))  # registers every custom search parameter
    t0 = time.perf_counter()
    from service.commands.progress import Bar
    from service.search.reindex import count, reindex_all

    with Bar("reindexing", total=count(services.db, args.rtype)) as bar:
        def done(rtype: str, n: int) -> None:
            bar.describe(f"reindexing {rtype}")
            bar.advance(n)

        n = reindex_all(services.db, settings.fhir_base, args.rtype, progress=done)
    print(f"reindexed {n} resources in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    services.db.dispose()
    return 0
