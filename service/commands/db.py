"""`sharedcare db upgrade`: apply Alembic migrations to SHAREDCARE_DATABASE_URL."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database administration")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations up to the latest revision")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=upgrade)


def upgrade(args: argparse.Namespace) -> int:
    from service.config import get_settings
    from service.migrate import upgrade as run_upgrade

    settings = get_settings()
    run_upgrade(settings.database_url, args.revision)
    print(f"database upgraded to {args.revision}", file=sys.stderr)
    return 0
