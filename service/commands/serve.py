"""`sharedcare serve [--host H] [--port P] [--workers N]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the FHIR API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--migrate", action="store_true", help="run database migrations before serving")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.config import get_settings
    from service.logging import configure_logging, log_start, uvicorn_log_config

    if not 1 <= args.workers <= 64 or not 0 < args.port < 65536:
        print("error: --workers must be 1-64 and --port 1-65535", file=sys.stderr)
        return 2
    public_url(args.host, args.port)
    settings = get_settings()
    configure_logging()
    _keys_ready(settings)
    _remember(settings, args)
    metrics_folder(settings, args.port)
    if args.migrate:
        from service.migrate import upgrade

        upgrade(get_settings().database_url)
    if args.workers > 1:
        _seal_here(get_settings())
    from service.api.http_protocol import FhirHttpProtocol

    log_start(args.host, args.port, settings.database_url, args.workers)
    uvicorn.run("service.api.app:app_factory", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False, proxy_headers=True,
                http=FhirHttpProtocol, log_config=uvicorn_log_config())
    return 0


def _seal_here(settings: Settings) -> None:
    """With several workers, this (supervising) process seals the audit log and flushes its spool, and the
    workers do not: sealing hashes thousands of rows a second, which would hold a worker's interpreter lock
    while it answers requests (measured: it doubled the read p99)."""
    import os

    from service.audit.log import AuditLog
    from service.audit.seal import Sealer
    from service.db import Database

    if settings.audit_seal_seconds <= 0:
        return
    db = Database(settings)
    audit = AuditLog(db, settings.var_dir / "audit-spool")
    Sealer(db, settings, audit.maybe_flush).start()
    os.environ["SHAREDCARE_AUDIT_SEAL_SECONDS"] = "0"  # (the workers, spawned after this, read it)


def public_url(host: str, port: int) -> str:
    """SHAREDCARE_BASE_URL, or (unset) http://HOST:PORT, set in the environment for the workers: tokens' issuer and
    audience, and the SMART discovery links, follow the address the server was started on."""
    import os

    if not os.environ.get("SHAREDCARE_BASE_URL"):
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
        os.environ["SHAREDCARE_BASE_URL"] = f"http://{shown}:{port}"
        from service.config import get_settings

        get_settings.cache_clear()
    return os.environ["SHAREDCARE_BASE_URL"]


SERVE_FILE = "serve.json"  # in the var directory: where the server last started, for `sharedcare token`


def _remember(settings: Settings, args: argparse.Namespace) -> None:
    import json
    import os

    try:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        tmp = settings.var_dir / f".{SERVE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"base_url": settings.base_url, "host": args.host, "port": args.port,
                                   "pid": os.getpid()}))
        os.replace(tmp, settings.var_dir / SERVE_FILE)
    except OSError as exc:  # (a read-only var directory: `sharedcare token` then needs SHAREDCARE_BASE_URL)
        print(f"note: could not record the address in {settings.var_dir / SERVE_FILE}: {exc}", file=sys.stderr)


def metrics_folder(settings: Settings, port: int) -> None:
    """Every process's metrics in one folder (prometheus_client's multiprocess mode, service/metrics.py), one per
    server (by port), emptied at start; set before prometheus_client is first imported here and inherited by the
    workers."""
    import os

    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.var_dir / "metrics" / str(port))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def _keys_ready(settings: Settings) -> None:
    """Before any worker starts: the signing key, the server secret and the audit seal key are there (made now only
    in demo mode), so a server outside demo mode without them stops at once with the variable to set, never with
    keys of its own."""
    from service.audit.seal import load_key
    from service.auth.keys import KeyStore, retention_for
    from service.secrets import server_secret

    KeyStore(settings.keys_dir, retention_for(settings)).ensure(create=settings.demo)
    server_secret(settings)
    load_key(settings)
