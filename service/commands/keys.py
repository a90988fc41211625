"""`sharedcare keys rotate|list`: the token-signing keys in SHAREDCARE_KEYS_DIR.

Rotation makes a new current key; the old public keys stay in the JWKS until the tokens they signed have
expired, so nothing in flight breaks. Running workers pick the new key up without a restart.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="token-signing keys")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    rot = ksub.add_parser("rotate", help="make a new current signing key")
    rot.set_defaults(func=rotate)
    ls = ksub.add_parser("list", help="list signing keys")
    ls.set_defaults(func=list_keys)


def _store():  # type: ignore[no-untyped-def]
    from service.auth.keys import KeyStore
    from service.config import get_settings

    s = get_settings()
    store = KeyStore(s.keys_dir, s.access_token_ttl + s.clock_skew + 60)
    store.ensure()
    return store


def rotate(args: argparse.Namespace) -> int:
    kid = _store().rotate()
    print(kid)
    print(f"new current signing key {kid}; previous keys stay published until their tokens expire",
          file=sys.stderr)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    store = _store()
    current, _ = store.current()
    for info in store.infos():
        state = "current" if info.kid == current else (
            f"retired {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(info.retired))}" if info.retired else "-")
        print(f"{info.kid}\t{info.alg}\t{state}")
    return 0
