"""The delivery worker: a thread per serve process (service.background.ProcessThread) that sends due
notifications from the durable queue (`subscription_delivery`).

- Claiming: due jobs are claimed in a short write transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so the
  workers of every process share the queue without waiting on each other; SQLite: its write lock) by pushing
  their `next_at` on by a lease: a job whose worker died is due again once the lease has run out (so a
  notification is sent at least once). No transaction is open while an endpoint is called.
- Sending: the resource is read again, as the subscription's owner, through the Repository (the version that
  matched; the owner's access now: a resource they may no longer see is dropped, not sent), then the request is
  made (service/subscriptions/notification.py). Each attempt is audited like any access (the owner as the user,
  the resource, the endpoint, the outcome), in the transaction that records the attempt.
- Retries: a failure (no connection, timeout, a non-2xx answer) is retried after `retry_seconds`, doubling each
  time up to `max_retry_seconds`; after `max_attempts` the job fails, the subscription's status becomes `error`
  with the reason in `Subscription.error`, and its other pending notifications are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update

from service import tracing
from service.access.record import RequestRecord
from service.audit.rows import event_row
from service.background import ProcessThread
from service.clock import now_us
from service.fhir.outcome import OperationOutcomeError
from service.subscriptions import notification
from service.subscriptions import owner as owners
from service.subscriptions.tables import subscription as S
from service.subscriptions.tables import subscription_delivery as D

log = logging.getLogger("sharedcare.subscriptions")
BATCH = 10
INTERACTION = "subscription-notification"


class Notifier:
    def __init__(self, hub: Any) -> None:
        self.hub = hub  # settings and services (service.subscriptions.Subscriptions)
        self._thread = ProcessThread("subscription-delivery", self._run)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._serving = False  # started by a serve process (never by a command-line tool's writes)
        self._last_error: tuple[str, float] = ("", 0.0)
        self._running: threading.Thread | None = None

    # -- the thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the worker in this process (again, after `stop`)."""
        self._serving = True
        self._stop.clear()
        self._ensure()

    def serve(self) -> None:
        """A serve process (its app is being made): its worker runs from now on if the database holds an active
        subscription or a queued notification, else from the moment this process writes a subscription or queues
        a notification. (So a process of a service with no subscriptions polls nothing.)"""
        self._serving = True
        self._stop.clear()
        if not self.hub.settings.worker:
            return
        try:
            with self.hub.services.db.read() as conn:
                busy = conn.execute(select(S.c.id).where(S.c.status == "active").limit(1)).first() is not None or \
                    conn.execute(select(D.c.id).where(D.c.state == "pending").limit(1)).first() is not None
        except Exception:  # noqa: BLE001 (a database not migrated or not up yet: start, the worker copes)
            busy = True
        if busy:
            self._ensure()

    def wake(self) -> None:
        """A delivery was queued, or a subscription made active, by this process (its transaction commits soon): run
        the worker and look again now. A process that does not serve (`sharedcare demo load`, say) leaves it to the
        servers' workers."""
        if self._serving:
            self._ensure()
            self._wake.set()

    def stop(self, wait: float = 0.0) -> None:
        """Stop sending from this process until `start` (the queue stays: other processes, or a restart, send);
        `wait`: up to so many seconds for a notification being sent to be recorded."""
        self._stop.set()
        self._wake.set()
        running = self._running
        if wait and running is not None and running is not threading.current_thread():
            running.join(wait)

    def _ensure(self) -> None:
        if self.hub.settings.worker and not self._stop.is_set():
            self._thread.ensure()

    def _run(self) -> None:
        self._running = threading.current_thread()
        # (the environment's proxy settings apply: HTTPS_PROXY for an egress proxy, NO_PROXY for local endpoints)
        with httpx.Client(timeout=self.hub.settings.timeout_seconds, follow_redirects=False) as http:
            while not self._stop.is_set():
                try:
                    sent = self.run_once(http)
                except Exception as exc:  # noqa: BLE001 (the worker must outlive a database hiccup; logged)
                    self._log_failure(exc)
                    sent = 0
                if not sent:
                    self._wake.wait(self.hub.settings.poll_seconds)
                    self._wake.clear()

    def _log_failure(self, exc: Exception) -> None:
        """Logged once a minute while the same failure repeats (a database that is down, say)."""
        text, when = f"{type(exc).__name__}: {exc}"[:300], time.monotonic()
        if text != self._last_error[0] or when - self._last_error[1] > 60:
            log.exception("subscription delivery failed; retrying shortly")
            self._last_error = (text, when)

    # -- one round ------------------------------------------------------------------------------------
    def run_once(self, http: httpx.Client) -> int:
        jobs = self._claim()
        for job in jobs:
            with tracing.background("subscription delivery", **{"fhir.resource_type": job.res_type,
                                                                "sharedcare.delivery.attempt": job.attempts + 1}):
                self._deliver(http, job)
        return len(jobs)

    def _claim(self) -> list[Any]:
        services = self.hub.services
        now = now_us()
        due = (D.c.state == "pending", D.c.next_at <= now)
        with services.db.read() as conn:  # (idle: a read, no write lock)
            if conn.execute(select(D.c.id).where(*due).limit(1)).first() is None:
                return []
        lease = int(self.hub.settings.lease_seconds * 1_000_000)
        with services.db.write() as conn:
            stmt = select(D).where(*due).order_by(D.c.next_at, D.c.id).limit(BATCH)
            if services.db.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            jobs = conn.execute(stmt).all()
            if jobs:
                conn.execute(update(D).where(D.c.id.in_([j.id for j in jobs])).values(next_at=now + lease))
        return jobs

    def _deliver(self, http: httpx.Client, job: Any) -> None:
        from service.repository import Repository

        services = self.hub.services
        stored, dropped = None, None
        with services.db.read() as conn:
            sub = conn.execute(select(S).where(S.c.id == job.subscription_id)).first()
            ctx = owners.context_for(services, conn, sub.owner) if sub is not None else None
            if sub is None or sub.status != "active":
                dropped = f"the subscription is {sub.status if sub else 'gone'}"
            elif sub.end_at is not None and sub.end_at <= now_us():
                dropped = "the subscription has ended"
            elif ctx is None:
                dropped = f"{owners.describe(sub.owner)} is no longer active"
            else:
                record = RequestRecord(interaction=INTERACTION)
                try:
                    stored = Repository(services, conn, ctx, record).vread(job.res_type, job.res_id,
                                                                           str(job.version))
                except OperationOutcomeError as err:
                    dropped = (f"{job.res_type}/{job.res_id} is no longer visible to {owners.describe(sub.owner)} "
                               f"({err.status})")
        if dropped is not None or stored is None or sub is None or ctx is None:
            self._finish(job, "dropped", error=dropped)
            return
        note = notification.build(sub.endpoint, sub.payload, orjson.loads(sub.headers), stored, job.event,
                                  services.settings.fhir_base)
        status: int | None = None
        try:
            with http.stream(note.method, note.url, content=note.body, headers=note.headers) as resp:
                status = resp.status_code  # (the answer's body is not read: only its status counts)
            error = None if 200 <= status < 300 else f"{note.method} {note.url} answered HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{note.method} {note.url} failed: {type(exc).__name__}" + (f" ({exc})" if str(exc) else "")
        row = event_row(ctx, kind="rest", interaction=INTERACTION, outcome=0 if error is None else 4, desc=error,
                        patients=stored.owners, target=f"{stored.ref}/_history/{stored.version}", record=record,
                        subscription=f"Subscription/{sub.id}", endpoint=note.url, method=note.method,
                        payload=sub.payload, attempt=job.attempts + 1)
        row.action = "E" if sub.payload == "empty" else "R"
        row.status = status
        if error is None:
            self._finish(job, "done", status=status, audit=row)
            return
        attempts = job.attempts + 1
        if attempts >= self.hub.settings.max_attempts:
            reason = f"{attempts} attempts to notify {note.url} failed; the last: {error}"
            self._finish(job, "failed", status=status, error=error, audit=row, fail_subscription=reason)
            return
        delay = self.hub.settings.retry_delay(attempts)
        self._finish(job, "pending", status=status, error=error, audit=row, next_at=now_us() + int(delay * 1e6))

    def _finish(self, job: Any, state: str, *, status: int | None = None, error: str | None = None,
                audit: Any = None, next_at: int | None = None, fail_subscription: str | None = None) -> None:
        services = self.hub.services
        now = now_us()
        attempted = audit is not None
        tracing.note(**{"sharedcare.delivery.state": state}, **({"http.response.status_code": status} if status else {}))
        values: dict[str, Any] = {"state": state, "last_status": status, "last_error": error,
                                  "attempts": job.attempts + (1 if attempted else 0)}
        if state == "pending":
            values["next_at"] = next_at
        else:
            values["finished_at"] = now
        try:
            with services.db.write() as conn:
                conn.execute(update(D).where(D.c.id == job.id).values(**values))
                if fail_subscription is not None:
                    self._fail_subscription(conn, job.subscription_id, fail_subscription)
                if audit is not None:
                    services.audit.insert(conn, [audit])
        except Exception:
            if audit is not None:  # the attempt happened: its audit row is kept (or spooled) whatever else failed
                services.audit.commit([audit])
            raise

    def _fail_subscription(self, conn: Any, sub_id: str, reason: str) -> None:
        """Status `error` with the reason, on the Subscription itself (through the repository, as the server)."""
        from service.repository import Repository

        repo = Repository.internal(self.hub.services, conn)
        current = repo.get("Subscription", sub_id)
        conn.execute(update(S).where(S.c.id == sub_id).values(status="error", error=reason, updated_at=now_us()))
        conn.execute(update(D).where(D.c.subscription_id == sub_id, D.c.state == "pending").values(
            state="dropped", finished_at=now_us(), last_error="the subscription is in error"))
        if current is None:
            return
        body = current.json()
        meta = body.get("meta") or {}
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if not meta:
            body.pop("meta", None)
        body["status"], body["error"] = "error", reason
        repo.update("Subscription", sub_id, body)
        log.warning("Subscription/%s is now in error: %s", sub_id, reason)
