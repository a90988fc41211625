"""`sharedcare client add|list`: SMART apps (public, PKCE) and partner systems (private_key_jwt).

A partner system registers its public key: `--jwks FILE` (a JWK Set, each key with its `kid`) or
`--public-key PEM --kid KID --alg RS384|ES384`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.commands._auth_common import fail, services


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="OAuth clients (apps and partner systems)")
    csub = p.add_subparsers(dest="client_command", required=True)
    add = csub.add_parser("add", help="register or update a client")
    add.add_argument("client_id")
    add.add_argument("--name", required=True)
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--public", action="store_true", help="a user-facing app (authorization code + PKCE)")
    kind.add_argument("--jwks", type=Path, help="a partner system's JWK Set file (private_key_jwt)")
    kind.add_argument("--public-key", type=Path, help="a partner system's public key, PEM (private_key_jwt)")
    add.add_argument("--kid", help="key id for --public-key")
    add.add_argument("--alg", choices=["RS384", "ES384"], help="algorithm for --public-key")
    add.add_argument("--redirect-uri", action="append", default=[], help="exact redirect URI (public apps)")
    add.add_argument("--scope", help="the most this client may be granted")
    add.add_argument("--organisation", help="Organization/o the system belongs to")
    add.add_argument("--ods", help="the organisation's ODS code")
    add.add_argument("--can-introspect", action="store_true", help="may introspect any token (resource servers)")
    add.set_defaults(func=add_client)
    ls = csub.add_parser("list", help="list clients")
    ls.set_defaults(func=list_clients)


def _jwks(args: argparse.Namespace) -> dict:
    from joserfc.jwk import KeySet, import_key

    if args.jwks:
        data = json.loads(args.jwks.read_text())
        keys = KeySet.import_key_set(data)  # validates
        if any(k.is_private for k in keys.keys):
            raise ValueError("the JWKS holds a private key; register the public keys only")
        return data
    if not (args.kid and args.alg):
        raise ValueError("--public-key needs --kid and --alg")
    key = import_key(args.public_key.read_bytes(), "RSA" if args.alg.startswith("RS") else "EC")
    if key.is_private:
        raise ValueError("that is a private key; register the public key only")
    jwk = key.as_dict(private=False)
    jwk.update({"kid": args.kid, "alg": args.alg, "use": "sig"})
    return {"keys": [jwk]}


def add_client(args: argparse.Namespace) -> int:
    from service.auth.identities import SYSTEM_CEILING, Client, upsert_client
    from service.auth.scopes import ScopeError

    try:
        if args.public:
            if not args.redirect_uri:
                return fail("a public app needs at least one --redirect-uri")
            client = Client(client_id=args.client_id, name=args.name, auth_method="none",
                            grant_types=("authorization_code", "refresh_token"),
                            redirect_uris=tuple(args.redirect_uri),
                            scope=args.scope or "patient/*.cruds user/*.cruds launch/patient openid fhirUser "
                                                "offline_access online_access",
                            organisation=args.organisation, ods_code=args.ods, can_introspect=args.can_introspect)
        else:
            grants = ("client_credentials",) + (("authorization_code", "refresh_token") if args.redirect_uri else ())
            client = Client(client_id=args.client_id, name=args.name, auth_method="private_key_jwt",
                            grant_types=grants, redirect_uris=tuple(args.redirect_uri),
                            scope=args.scope or SYSTEM_CEILING, organisation=args.organisation, ods_code=args.ods,
                            jwks=_jwks(args), can_introspect=args.can_introspect)
        svc = services()
        with svc.db.write() as conn:
            upsert_client(conn, client)
    except (ValueError, ScopeError, OSError) as exc:
        return fail(str(exc))
    print(f"client {args.client_id} saved ({client.auth_method}; may have: {client.scope})", file=sys.stderr)
    return 0


def list_clients(args: argparse.Namespace) -> int:
    from service.auth.identities import list_clients as all_clients

    svc = services()
    with svc.db.read() as conn:
        for c in all_clients(conn):
            print("\t".join([c.client_id, c.auth_method, " ".join(c.grant_types), c.organisation or "-", c.scope]))
    return 0
