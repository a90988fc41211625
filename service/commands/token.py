"""`sharedcare token --user NAME [--scope S] [--patient ID]` | `--client ID [--scope S]`: print a signed
access token alone on stdout (for operators and scripted checks). Without --scope it carries everything the
identity may have (with --patient: its patient/ scopes, confined to that patient).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from service.commands._auth_common import fail, services


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="print a signed access token")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user name")
    who.add_argument("--client", help="a client id (backend system)")
    p.add_argument("--scope", help="SMART scopes, space-separated (default: everything the identity may have)")
    p.add_argument("--patient", help="a Patient id to put in context (users only)")
    p.add_argument("--ttl", type=int, help="lifetime in seconds (default SHAREDCARE_ACCESS_TOKEN_TTL)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.auth.issue import IssueError, token_for_client, token_for_user
    from service.auth.scopes import ScopeError

    follow_server()
    if args.client and args.patient:
        return fail("--patient is for --user tokens")
    if args.ttl is not None and not 0 < args.ttl <= 24 * 3600:
        return fail("--ttl must be between 1 and 86400 seconds")
    svc = services()
    try:
        if args.user:
            token = token_for_user(svc, args.user, scope=args.scope, patient=args.patient, ttl=args.ttl)
        else:
            token = token_for_client(svc, args.client, scope=args.scope, ttl=args.ttl)
    except (IssueError, ScopeError) as exc:
        return fail(str(exc))
    finally:
        svc.db.dispose()
    print(token)
    return 0


def follow_server() -> None:
    """Without SHAREDCARE_BASE_URL, the issuer is the address `sharedcare serve` last started with in the same var
    directory (so `PORT=8101 make run` and a plain `sharedcare token` agree), else the default."""
    from service.commands.serve import SERVE_FILE
    from service.config import get_settings

    settings = get_settings()
    if "base_url" in settings.model_fields_set:  # (SHAREDCARE_BASE_URL is set)
        return
    path = settings.var_dir / SERVE_FILE
    try:
        base = json.loads(path.read_text()).get("base_url")
    except (OSError, ValueError):
        return
    if isinstance(base, str) and base.startswith(("http://", "https://")):
        os.environ["SHAREDCARE_BASE_URL"] = base  # (and so for what this process starts)
        get_settings.cache_clear()
        print(f"base URL {base} (where sharedcare serve last started, from {path})", file=sys.stderr)
