"""The `sharedcare` command line: serve, db upgrade, demo load, and the operator tools.

Each subcommand lives in its own module under service/commands/ and registers an argparse parser;
anything a command prints for scripts goes to stdout, everything else to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharedcare", description="Shared-care record service")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
