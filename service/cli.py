"""The `sharedcare` command line: serve, db upgrade, demo load, and the operator tools.

Each subcommand lives in its own module under service/commands/ and registers an argparse parser; its examples
are in `EXAMPLES` below (shown by `--help`). Anything a command prints for scripts goes to stdout, everything else
to stderr. Exit codes scripts can rely on (README, "Exit codes"):

    0  success
    1  the command ran and found a problem (audit log broken, entries rejected, nothing to act on)
    2  usage: bad arguments, or an input that names nothing known (unknown user, missing file)
    3  configuration: a SHAREDCARE_* setting is invalid (the message names the variable)
    4  the database (or a tool it needs, such as pg_dump) is unavailable
    5  internal error (logged)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from service.commands import COMMANDS

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

EXIT_CODES = """exit codes: 0 success; 1 the command found a problem (e.g. audit log broken, entries rejected);
  2 bad arguments or unknown names; 3 invalid configuration (the variable is named); 4 database unavailable;
  5 internal error; 130 interrupted"""

# Examples shown by `sharedcare <command> --help` (keyed by the command's words).
EXAMPLES: dict[str, str] = {
    "": """examples:
  sharedcare db upgrade && sharedcare serve --host 0.0.0.0 --port 8000 --workers 4
  SHAREDCARE_DEMO=1 sharedcare demo load
  sharedcare token --user nurse.nina
  sharedcare audit verify || echo "audit log broken"
  sharedcare <command> --help""",
    "serve": """examples:
  sharedcare serve                                  # http://127.0.0.1:8000, one process
  sharedcare serve --host 0.0.0.0 --port 8101 --workers 4 --migrate
  SHAREDCARE_BASE_URL=https://care.example.nhs.uk sharedcare serve --workers 4   # behind a TLS proxy
Without SHAREDCARE_BASE_URL the public URL is http://HOST:PORT (and `sharedcare token` follows it).""",
    "db": """examples:
  sharedcare db upgrade""",
    "db upgrade": """examples:
  sharedcare db upgrade             # to the newest revision
  SHAREDCARE_DATABASE_URL=postgresql://sharedcare@db/sharedcare sharedcare db upgrade""",
    "demo": """examples:
  SHAREDCARE_DEMO=1 sharedcare demo load""",
    "demo load": """examples:
  SHAREDCARE_DEMO=1 sharedcare demo load     # safe to run again: loads only what is missing""",
    "audit": """examples:
  sharedcare audit verify && sharedcare audit anchor >> /secure/anchors.jsonl""",
    "audit seal": """examples:
  sharedcare audit seal""",
    "audit verify": """examples:
  sharedcare audit verify           # exit 0 intact, 1 broken (the first bad event named)
  sharedcare audit verify --all     # every problem""",
    "audit anchor": """examples:
  sharedcare audit anchor >> /secure/anchors.jsonl""",
    "search": """examples:
  sharedcare search reindex --type Observation""",
    "search reindex": """examples:
  sharedcare search reindex                    # every type
  sharedcare search reindex --type Patient""",
    "user": """examples:
  sharedcare user list
  echo "$PASSWORD" | sharedcare user add nurse.nora --kind practitioner --password-stdin \\
      --fhir-user Practitioner/prac-nora --organisation Organization/org-community-trust --ods RYX""",
    "user add": """examples:
  echo "$PASSWORD" | sharedcare user add nurse.nora --kind practitioner --password-stdin \\
      --fhir-user Practitioner/prac-nora --organisation Organization/org-community-trust --ods RYX \\
      --role-code R8001 --role clinician
  sharedcare user add ada.admin --kind admin --no-password""",
    "user list": """examples:
  sharedcare user list""",
    "user passwd": """examples:
  echo "$NEW_PASSWORD" | sharedcare user passwd nurse.nora --password-stdin""",
    "user disable": """examples:
  sharedcare user disable nurse.nora""",
    "client": """examples:
  sharedcare client list
  sharedcare client add gp-system --name "GP system" --jwks demo/gp-system.jwks.json --ods A81001""",
    "client add": """examples:
  sharedcare client add care-app --name "Care app" --public --redirect-uri https://app.example/callback
  sharedcare client add gp-system --name "GP system" --jwks gp-system.jwks.json \\
      --organisation Organization/org-gp --ods A81001 --scope "system/*.rs\"""",
    "client list": """examples:
  sharedcare client list""",
    "token": """examples:
  sharedcare token --user nurse.nina
  sharedcare token --user patient.pat --patient pat-pat --scope "patient/*.rs"
  sharedcare token --client gp-system --scope "system/Patient.rs" --ttl 300
  curl -H "Authorization: Bearer $(sharedcare token --user nurse.nina)" http://127.0.0.1:8000/fhir/Patient
The issuer is SHAREDCARE_BASE_URL, else the address `sharedcare serve` last started with (from the same var
directory), else http://127.0.0.1:8000.""",
    "keys": """examples:
  sharedcare keys generate          # once, before the first start outside demo mode
  sharedcare keys rotate            # a new signing key; the old one is published until its tokens expire
  sharedcare keys list""",
    "keys generate": """examples:
  SHAREDCARE_KEYS_DIR=/run/secrets/sharedcare sharedcare keys generate""",
    "keys rotate": """examples:
  sharedcare keys rotate && sharedcare keys list""",
    "keys list": """examples:
  sharedcare keys list""",
    "policy": """examples:
  sharedcare policy rebuild""",
    "policy rebuild": """examples:
  sharedcare policy rebuild         # after importing data with care teams, episodes or referrals""",
    "optout": """examples:
  sharedcare optout import optouts.txt --replace && sharedcare optout count""",
    "optout import": """examples:
  sharedcare optout import optouts.txt --replace      # the file is the whole list
  cat new-optouts.txt | sharedcare optout import -""",
    "optout count": """examples:
  sharedcare optout count""",
    "export": """examples:
  sharedcare export work            # the export worker, in its own process (a service of its own)
  sharedcare export work --once     # until the queue is empty
  sharedcare export list && sharedcare export purge""",
    "export work": """examples:
  sharedcare export work --once""",
    "export list": """examples:
  sharedcare export list""",
    "export purge": """examples:
  sharedcare export purge""",
    "backup": """examples:
  sharedcare backup /backups/sharedcare-$(date +%F).dump
  sharedcare backup /backups/sharedcare.db          # SQLite: an online copy of the file""",
    "restore": """examples:
  SHAREDCARE_DATABASE_URL=postgresql://sharedcare@db/fresh sharedcare restore /backups/sharedcare.dump
  sharedcare restore /backups/sharedcare.db && sharedcare audit verify""",
    "import": """examples:
  sharedcare import bundles/                  # every *.json (transaction Bundles) and *.ndjson under it
  sharedcare import patients.ndjson --report rejected.json""",
}


def _decorate(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """Examples and exit codes in every command's --help (and its one-line help as its description)."""
    key = " ".join(words)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    examples = EXAMPLES.get(key)
    parser.epilog = "\n\n".join(x for x in (examples, EXIT_CODES if not words else None) if x) or None
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subcommands here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help for a in action._choices_actions}  # noqa: SLF001
            for name, sub in action.choices.items():
                if sub.description is None and helps.get(name):
                    sub.description = helps[name]
                _decorate(sub, [*words, name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharedcare", description="Shared-care record service: a FHIR R4 server "
                                     "for one health-and-social-care record, and its operator tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for register in COMMANDS:
        register(sub)
    _decorate(parser, [])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # configuration errors say so; argparse's own exits keep their code
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_CONFIG if exc.code.startswith("configuration error") else EXIT_PROBLEM
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a clear message and a code
        return _failed(exc)


def _failed(exc: Exception) -> int:
    from sqlalchemy.exc import DBAPIError, OperationalError

    from service.audit.log import unavailable
    from service.logging import configure_logging, scrub
    from service.repository import StorageUnavailable

    if isinstance(exc, StorageUnavailable) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__
    if isinstance(exc, (OperationalError, DBAPIError)) and unavailable(exc):
        first = scrub(str(exc.orig) if getattr(exc, "orig", None) else str(exc)).strip().splitlines()
        print(f"error: the database is unavailable: {first[0] if first else type(exc).__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    configure_logging()
    logging.getLogger("sharedcare.cli").error("internal error", exc_info=exc)
    print(f"error: internal error ({type(exc).__name__}); see the log line above", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
