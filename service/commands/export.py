"""Bulk export jobs from the command line:

    sharedcare export work [--once]    run the export worker here (what every serve process also runs in a thread):
                                       claims queued jobs from the database and runs them; --once: until the queue
                                       is empty, then exit
    sharedcare export list             the jobs in the queue (id, state, level, owner, progress) as tab-separated lines
    sharedcare export purge            delete jobs and files whose time is up now

`work --once` shows a progress bar (the queued jobs, and the running job's resources so far) when stderr is a
terminal (service/commands/progress.py); then one summary line.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections import Counter
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="bulk export ($export) jobs: run the worker, list, purge")
    psub = p.add_subparsers(dest="export_command", required=True)
    w = psub.add_parser("work", help="run the export worker in this process")
    w.add_argument("--once", action="store_true", help="run until the queue is empty, then exit")
    w.set_defaults(func=work)
    ls = psub.add_parser("list", help="the jobs in the queue")
    ls.set_defaults(func=list_jobs)
    pg = psub.add_parser("purge", help="delete expired jobs and their files now")
    pg.set_defaults(func=purge)


def _services():  # type: ignore[no-untyped-def]
    from service.bootstrap import build_services
    from service.config import get_settings

    return build_services(get_settings())


def work(args: argparse.Namespace) -> int:
    svc = _services()
    worker = svc.export_worker
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())  # finish the page, give the job back, exit
    try:
        if args.once:
            from service.commands.progress import Bar

            outcomes: Counter[str] = Counter()
            with Bar("exporting", total=_queued(svc.db)) as bar:
                stop = threading.Event()
                if bar.shown:
                    threading.Thread(target=_watch, args=(svc.db, bar, stop), daemon=True).start()
                try:
                    while (outcome := worker.run_once()) is not None:
                        outcomes[outcome] += 1
                        bar.advance()
                finally:
                    stop.set()
            said = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            print(f"{sum(outcomes.values())} export job(s) run" + (f" ({said})" if said else ""), file=sys.stderr)
        else:
            print("export worker running (Ctrl-C or SIGTERM to stop)", file=sys.stderr)
            worker.loop()
    finally:
        svc.db.dispose()
    return 0


def _queued(db: Any) -> int:
    from sqlalchemy import func, select

    from service.export.tables import export_job as J

    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(J).where(J.c.state == "queued")).scalar_one())


def _watch(db: Any, bar: Any, stop: threading.Event) -> None:
    """The bar's description follows the running job's count of exported resources (read from its row)."""
    from sqlalchemy import select

    from service.export.tables import export_job as J

    while not stop.wait(0.5):
        try:
            with db.read() as conn:
                row = conn.execute(select(J.c.id, J.c.exported).where(J.c.state == "running").limit(1)).first()
        except Exception:  # noqa: BLE001  (only the bar's text: never worth stopping the export for)
            row = None
        if row is not None:
            bar.describe(f"exporting job {row.id[:8]}: {row.exported} resources")


def list_jobs(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from service.export.tables import export_job as J

    svc = _services()
    with svc.db.read() as conn:
        for r in conn.execute(select(J.c.id, J.c.state, J.c.level, J.c.owner, J.c.progress).order_by(J.c.created_us)):
            print("\t".join(str(x or "") for x in r))
    svc.db.dispose()
    return 0


def purge(args: argparse.Namespace) -> int:
    from service.export import jobs

    svc = _services()
    total = 0
    while n := jobs.purge_expired(svc.db):
        total += n
    print(f"{total} expired export job(s) deleted", file=sys.stderr)
    svc.db.dispose()
    return 0
