"""A PostgreSQL streaming replica for searches and bulk export, used only while it is fresh enough.

The staleness rule. A search runs its access condition (care relationships, consents, objections, break-glass
grants) as SQL in the same query, so on the replica it sees the policy as of the replica. The replica is therefore
used only while it holds every commit the primary made more than `max_lag` seconds ago
(SHAREDCARE_REPLICA_MAX_LAG_SECONDS, default 2): a withdrawn consent or a new objection hides data from searches
within that bound, and at once from reads by id (which always run on the primary).

How it is measured (per process, off the request path): a `ProcessThread` samples the primary's
`pg_current_wal_lsn()` every PROBE_SECONDS, noting the (monotonic) time just before, then asks the replica for
`pg_last_wal_replay_lsn()`. The newest sample the replica has replayed past is a moment up to which the replica
holds everything the primary had committed (`synced`). A unit of work may use the replica while
`now - synced <= max_lag`: an upper bound on its staleness (too high by up to a probe interval, never too low; a
commit acknowledged to a client has been written, so its position is at most the one sampled after it; with
`synchronous_commit = off` on the primary add up to its `wal_writer_delay`), that keeps growing while the replica
is paused, lagging or unreachable, so the primary takes over by itself. An idle primary is no
special case (its position does not move, so the replica has replayed past it). A replica that is not in
recovery (promoted, or a primary named by mistake) or that cannot be reached is set aside until a probe finds
it well again; a unit of work that fails on it is retried on the primary (never an error to the user).

Read-your-writes: a client (user and app) that wrote through this process is sent to the primary until the
replica has replayed past that write (`wrote`, `usable(since=...)`); other processes learn nothing of it, so
across processes the staleness rule is the bound. An export job uses the replica only once it holds every
commit made before the job started (its transactionTime is then true).

Nothing here runs when SHAREDCARE_DATABASE_REPLICA_URL is unset: `Database.replica` is None.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger("sharedcare.replica")

PROBE_SECONDS = 0.5
DEFAULT_MAX_LAG = 2.0
NEVER = -math.inf
# (LSNs as numbers of bytes; NULL from pg_last_wal_replay_lsn() when the server is not a standby)
PRIMARY_LSN = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"
REPLAYED_LSN = "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"


def configured(settings: Any) -> tuple[str | None, float]:
    """(the replica's SQLAlchemy URL or None, the staleness bound in seconds): SHAREDCARE_DATABASE_REPLICA_URL and
    SHAREDCARE_REPLICA_MAX_LAG_SECONDS, validated by service/config.py."""
    return (getattr(settings, "database_replica_url", None),
            float(getattr(settings, "replica_max_lag_seconds", DEFAULT_MAX_LAG)))


def client_key(ctx: Any) -> str | None:
    """Whose writes a search should see: the user (or client acting as itself) and the app."""
    p = getattr(ctx, "principal", None)
    return None if p is None else f"{p.subject}\x00{p.client_id or ''}"


class Replica:
    """The replica's engine (autocommit, like the primary's read pool), its freshness, and the clients waiting
    for their own writes to reach it."""

    def __init__(self, engine: Engine, primary_probe: Engine, replica_probe: Engine, max_lag: float) -> None:
        self.engine = engine
        self.max_lag = max_lag
        self.synced = NEVER  # monotonic time up to which the replica holds every commit of the primary
        self.state = "starting"
        self._primary_probe, self._replica_probe = primary_probe, replica_probe
        self._samples: deque[tuple[float, int]] = deque(maxlen=2000)
        self._writers: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        from service.background import ProcessThread

        self._thread = ProcessThread("replica-probe", self._loop)

    # -- deciding -------------------------------------------------------------------------------------------
    def lag(self) -> float:
        """The bound on the replica's staleness now, in seconds (infinite when unknown or set aside)."""
        return time.monotonic() - self.synced

    def usable(self, since: float = NEVER) -> bool:
        """Whether a unit of work may run on the replica now: it holds every commit older than `max_lag` seconds
        and every commit made before `since` (monotonic; a client's own last write, an export's start)."""
        self._thread.ensure()
        synced = self.synced
        return synced >= since and time.monotonic() - synced <= self.max_lag

    def wait(self, since: float, timeout: float) -> bool:
        """`usable(since)`, waiting up to `timeout` seconds for the replica to get there (background jobs only)."""
        deadline = time.monotonic() + timeout
        while not self.usable(since):
            if time.monotonic() >= deadline or self._stop.is_set() or self.state not in ("starting", "fresh",
                                                                                          "lagging"):
                return False
            time.sleep(0.05)
        return True

    def usable_for(self, client: str | None) -> bool:
        """`usable`, and the replica already holds what this client last wrote through this process."""
        since = self._writers.get(client, NEVER) if client is not None else NEVER
        return self.usable(since)

    def wrote(self, client: str | None) -> None:
        """A unit of work of this client committed on the primary just now: its searches stay on the primary
        until the replica has replayed past it."""
        if client is not None:
            with self._lock:
                self._writers[client] = time.monotonic()

    def failed(self, exc: BaseException) -> None:
        """A unit of work failed on the replica (it is retried on the primary): set it aside until a probe finds
        it well."""
        if self.synced != NEVER:
            log.warning("the read replica failed a query (%s); searches go to the primary until it answers again",
                        type(getattr(exc, "orig", exc)).__name__)
        self.synced = NEVER
        self.state = "failed"

    # -- measuring ------------------------------------------------------------------------------------------
    def probe(self) -> None:
        """One measurement: the primary's WAL position now, then how far the replica has replayed."""
        t = time.monotonic()
        try:
            with self._primary_probe.connect() as conn:
                self._samples.append((t, int(conn.exec_driver_sql(PRIMARY_LSN).scalar_one())))
        except Exception:  # (the primary away: nothing learned; the bound keeps growing)
            log.debug("replica probe: the primary did not answer", exc_info=True)
            return
        try:
            with self._replica_probe.connect() as conn:
                recovering, replayed = conn.exec_driver_sql(REPLAYED_LSN).one()
        except Exception as exc:  # noqa: BLE001  (any failure: set aside)
            self._set_aside("unreachable", f" ({type(getattr(exc, 'orig', exc)).__name__})")
            return
        if not recovering or replayed is None:
            self._set_aside("not a standby (pg_is_in_recovery() is false): not used")
            return
        caught = None
        while self._samples and self._samples[0][1] <= replayed:
            caught = self._samples.popleft()
        if caught is not None:
            self._samples.appendleft(caught)  # (the newest one replayed past stays: still true later)
            self.synced = max(self.synced, caught[0])
        self._prune()
        lag = self.lag()
        state = "fresh" if lag <= self.max_lag else "lagging"
        if state != self.state:
            bound = "unknown" if lag == math.inf else f"{lag:.1f} s"
            (log.info if state == "fresh" or self.state == "starting" else log.warning)(
                "read replica %s (staleness bound %s, limit %.1f s)", state, bound, self.max_lag)
            self.state = state

    def _set_aside(self, why: str, detail: str = "") -> None:
        self.synced = NEVER
        if self.state != why:
            log.warning("read replica %s%s; searches and exports use the primary", why, detail)
            self.state = why

    def _prune(self) -> None:
        """The clients whose last write the replica now holds need no entry any more."""
        if self._writers:
            synced = self.synced
            with self._lock:
                self._writers = {k: t for k, t in self._writers.items() if t >= synced}

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.probe()
            except Exception:  # (never let the thread die: the bound just grows)
                log.exception("replica probe failed")
            self._stop.wait(PROBE_SECONDS)

    def dispose(self) -> None:
        self._stop.set()
        for engine in (self.engine, self._primary_probe, self._replica_probe):
            engine.dispose()
