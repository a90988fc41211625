"""The export worker: claims queued jobs from the database and runs them, one at a time.

A daemon thread in every serve process (`service.background.ProcessThread`: after uvicorn forks its workers each
starts its own) unless SHAREDCARE_EXPORT_WORKER=0, or standalone with `sharedcare export work`. Idle, it looks
for work every SHAREDCARE_EXPORT_POLL_SECONDS with a plain read (no lock), and claims only when there is some;
now and then it deletes expired jobs and their files.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from service import tracing
from service.background import ProcessThread
from service.export import jobs
from service.export.runner import run_job

log = logging.getLogger("sharedcare.export")

PURGE_SECONDS = 60.0


class ExportWorker:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.stop = threading.Event()
        self._thread = ProcessThread("export-worker", self.loop)
        self._purged = 0.0

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        """Run in this process's thread (started once per process; not when SHAREDCARE_EXPORT_WORKER=0)."""
        if self.services.settings.export_worker:
            self.stop.clear()
            self._thread.ensure()

    def run_once(self) -> str | None:
        """Claim and run one job, if there is one; what happened to it (see runner.run_job), or None."""
        s = self.services.settings
        if not jobs.pending(self.services.db):
            return None
        job = jobs.claim(self.services.db, self.name, s.export_lease_seconds)
        if job is None:
            return None
        log.info("export %s claimed by %s (attempt %d)", job.id, job.worker, job.attempts)
        with tracing.background("export job", **{"sharedcare.export.attempt": job.attempts}):
            outcome = run_job(self.services, job, self.stop)
            tracing.note(**{"sharedcare.export.outcome": outcome})
        return outcome

    def purge(self) -> int:
        now = time.monotonic()
        if now - self._purged < PURGE_SECONDS:
            return 0
        self._purged = now
        return jobs.purge_expired(self.services.db)

    def loop(self) -> None:
        poll = self.services.settings.export_poll_seconds
        while not self.stop.is_set():
            try:
                self.purge()
                if self.run_once() is None:
                    self.stop.wait(poll)
            except Exception:  # (a missing table before migration, the database away: try again later)
                log.debug("export worker: nothing done this round", exc_info=True)
                self.stop.wait(max(poll, 5.0))
