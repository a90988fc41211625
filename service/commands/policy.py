"""Access policy administration:

    sharedcare policy rebuild                 recompute the care relationships from the stored record
    sharedcare optout import FILE [--replace] [--source NAME]
                                              the National Data Opt-out list: one NHS number per line
    sharedcare optout count                   how many NHS numbers are on the list
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="access policy administration")
    psub = p.add_subparsers(dest="policy_command", required=True)
    rb = psub.add_parser("rebuild", help="recompute the care relationships from the stored record")
    rb.set_defaults(func=rebuild)
    o = sub.add_parser("optout", help="the National Data Opt-out list (research and planning only)")
    osub = o.add_subparsers(dest="optout_command", required=True)
    imp = osub.add_parser("import", help="import NHS numbers, one per line ('-' for stdin)")
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="the file is the whole list: remove numbers not in it")
    imp.add_argument("--source", default="national-data-opt-out", help="where the list came from")
    imp.set_defaults(func=import_list)
    cnt = osub.add_parser("count", help="how many NHS numbers are on the list")
    cnt.set_defaults(func=count)


def _services():  # type: ignore[no-untyped-def]
    from service.bootstrap import build_services
    from service.config import get_settings

    return build_services(get_settings())


def rebuild(args: argparse.Namespace) -> int:
    from service.policy import config, relationships

    svc = _services()
    with svc.db.write() as conn:
        n = relationships.rebuild(conn, config.load())
    print(f"{n} care relationships", file=sys.stderr)
    svc.db.dispose()
    return 0


def import_list(args: argparse.Namespace) -> int:
    from service.policy import optout

    try:
        if args.file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.file, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    good, bad = optout.parse_lines(lines)
    for line, problem in bad:
        print(f"{args.file}:{line}: {problem}", file=sys.stderr)
    if bad:
        print(f"error: {len(bad)} line(s) rejected; nothing imported", file=sys.stderr)
        return 1
    svc = _services()
    with svc.db.write() as conn:
        new = optout.import_numbers(conn, good, source=args.source, replace=args.replace)
        total = optout.count(conn)
    print(f"{new} new NHS numbers; {total} on the list", file=sys.stderr)
    svc.db.dispose()
    return 0


def count(args: argparse.Namespace) -> int:
    from service.policy import optout

    svc = _services()
    with svc.db.read() as conn:
        print(optout.count(conn))
    svc.db.dispose()
    return 0
