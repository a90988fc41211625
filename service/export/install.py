"""Wiring: the file download route on the app, and the export worker thread of this process."""

from __future__ import annotations

from typing import Any


def installer(services: Any) -> Any:
    from service.export.worker import ExportWorker

    services.export_worker = ExportWorker(services)

    def install(app: Any) -> None:
        from service.export.download import install as routes

        routes(app)
        services.export_worker.start()  # (a daemon thread per process; SHAREDCARE_EXPORT_WORKER=0 turns it off)

    return install
