"""`sharedcare audit seal | verify | anchor`: the operator's tools for the sealed audit log."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit trail tools")
    asub = p.add_subparsers(dest="audit_command", required=True)
    s = asub.add_parser("seal", help="seal every audit row pending now (the server also does, every few seconds)")
    s.set_defaults(func=seal)
    v = asub.add_parser("verify", help="check the audit log against its seals, the key and the anchor file "
                                       "(exit 0 when intact)")
    v.add_argument("--all", action="store_true", help="list every problem, not only the first")
    v.set_defaults(func=verify)
    a = asub.add_parser("anchor", help="print the newest seal's head (JSON) to keep outside the database, and "
                                       "append it to the anchor file")
    a.set_defaults(func=anchor)


def _db():  # type: ignore[no-untyped-def]
    from service.config import get_settings
    from service.db import Database

    settings = get_settings()
    return settings, Database(settings)


def seal(args: argparse.Namespace) -> int:
    from service.audit.seal import seal_all

    settings, db = _db()
    try:
        made = seal_all(db, settings, margin_us=0)
    finally:
        db.dispose()
    rows = sum(s.count for s in made)
    print(f"sealed {rows} audit row(s) in {len(made)} seal(s)" + (f"; newest seal {made[-1].id}" if made else ""))
    return 0


def verify(args: argparse.Namespace) -> int:
    from service.audit.seal import load_key
    from service.audit.verify import verify as run_verify

    settings, db = _db()
    try:
        with db.read() as conn:
            report = run_verify(conn, load_key(settings), settings.anchor_path)
    finally:
        db.dispose()
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    summary = (f"{report.rows} sealed rows in {report.seals} seals ({report.anchored} anchored); "
               f"{report.unsealed} newer rows not sealed yet")
    if report.ok:
        print(f"audit log intact: {summary}")
        return 0
    print(f"audit log BROKEN: {report.problems[0]}")
    for problem in report.problems[1:] if getattr(args, "all", False) else ():
        print(f"  {problem}")
    print(f"{len(report.problems)} problem(s); {summary}", file=sys.stderr)
    return 1


def anchor(args: argparse.Namespace) -> int:
    from service.audit.seal import Sealed, newest
    from service.audit.seal import anchor as write_anchor

    settings, db = _db()
    try:
        with db.read() as conn:
            last = newest(conn)
    finally:
        db.dispose()
    if last is None:
        print("no seals yet", file=sys.stderr)
        return 1
    head = Sealed(last.id, last.count, last.mac)
    write_anchor(settings.anchor_path, [head])
    print(json.dumps({"seal": head.id, "mac": head.mac, "count": head.count, "sealed_at": last.sealed_at}))
    return 0
