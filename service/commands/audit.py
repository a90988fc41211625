"""`sharedcare audit verify`: check the audit hash chains; exit 0 when intact, 1 naming the first bad event."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit trail tools")
    asub = p.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="verify the audit hash chains (exit 0 when intact)")
    v.add_argument("--all", action="store_true", help="list the first bad event of every broken lane")
    v.set_defaults(func=verify)


def verify(args: argparse.Namespace) -> int:
    from service.audit.chain import verify as run_verify
    from service.config import get_settings
    from service.db import Database

    db = Database(get_settings())
    try:
        with db.read() as conn:
            report = run_verify(conn)
    finally:
        db.dispose()
    first = report.first
    if first is None:
        print(f"audit chain intact: {report.events} events in {report.lanes} lanes")
        return 0
    print(f"audit chain BROKEN: first bad event: {first.describe()}")
    if getattr(args, "all", False):
        for problem in sorted(report.problems, key=lambda p: (p.lane, p.seq)):
            print(f"  {problem.describe()}")
    print(f"{len(report.problems)} problem(s) found in {report.events} events ({report.lanes} lanes)",
          file=sys.stderr)
    return 1
