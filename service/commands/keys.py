"""`sharedcare keys generate|rotate|list`: the token-signing keys in SHAREDCARE_KEYS_DIR, and the server secret.

`generate` makes what a server needs before its first start outside demo mode: the first signing key, the server
secret (unless SHAREDCARE_SECRET or SHAREDCARE_SECRET_FILE provides it) and the audit seal key (unless
SHAREDCARE_AUDIT_KEY or SHAREDCARE_AUDIT_KEY_FILE provides it); it changes nothing that exists.
Rotation makes a new current key; the old public keys stay in the JWKS until the tokens they signed have expired,
so nothing in flight breaks. Running workers pick the new key up without a restart (they re-read the manifest).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="token-signing keys and the server secret")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    gen = ksub.add_parser("generate", help="make the first signing key, the server secret and the audit seal key "
                                           "where missing")
    gen.set_defaults(func=generate)
    rot = ksub.add_parser("rotate", help="make a new current signing key (the old one is published until its tokens "
                                         "expire, then retired)")
    rot.set_defaults(func=rotate)
    ls = ksub.add_parser("list", help="list signing keys: id, algorithm, state")
    ls.set_defaults(func=list_keys)


def _store() -> Any:
    from service.auth.keys import KeyStore, retention_for
    from service.config import get_settings

    s = get_settings()
    return KeyStore(s.keys_dir, retention_for(s))


def generate(args: argparse.Namespace) -> int:
    from service.audit.seal import key_path, load_key
    from service.config import get_settings
    from service.secrets import server_secret

    store = _store()
    made = store.ensure(create=True)
    current, _ = store.current()
    print(current)
    print(f"signing key {current} {'made' if made else 'already there'} in {store.dir}", file=sys.stderr)
    server_secret(get_settings(), create=True)
    print("server secret ready (SHAREDCARE_SECRET, SHAREDCARE_SECRET_FILE or the keys directory)", file=sys.stderr)
    settings = get_settings()
    configured = settings.audit_key is not None or settings.audit_key_file is not None
    path = key_path(settings)
    existed = configured or path.exists()
    load_key(settings, create=True)
    print(f"audit seal key {'ready' if existed else 'made'} "
          f"({'SHAREDCARE_AUDIT_KEY or SHAREDCARE_AUDIT_KEY_FILE' if configured else path})", file=sys.stderr)
    return 0


def rotate(args: argparse.Namespace) -> int:
    store = _store()
    store.ensure(create=False)  # (rotating needs keys to rotate: `keys generate` first)
    kid = store.rotate()
    print(kid)
    print(f"new current signing key {kid}; the previous key stays published and accepted for {store.retention} s "
          "(the longest a token it signed can live), then is retired", file=sys.stderr)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    store = _store()
    store.ensure(create=False)
    current, _ = store.current()
    now = int(store.clock())
    for info in store.infos():
        if info.kid == current:
            state = "current"
        elif info.retired is None:
            state = "-"
        elif info.retired + store.retention >= now:
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.retired + store.retention))
            state = f"published until {until}"
        else:
            state = "retired"
        print(f"{info.kid}\t{info.alg}\t{state}")
    return 0
