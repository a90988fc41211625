"""`sharedcare serve [--host H] [--port P] [--workers N]`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the FHIR API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--migrate", action="store_true", help="run database migrations before serving")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.config import get_settings

    if args.migrate:
        from service.migrate import upgrade

        upgrade(get_settings().database_url)
    uvicorn.run("service.api.app:app_factory", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False, proxy_headers=True)
    return 0
