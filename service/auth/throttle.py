"""The API rate limit per caller (a user, or a client acting as itself), shared by every process without a
database write per request.

Each process counts its callers' requests in fixed one-minute windows. Once a second a background thread adds
what it counted to the shared counters in `auth_rate_limit` (one upsert per caller seen, service.auth.ratelimit)
and learns each one's total across all processes. A request is refused (429 with Retry-After) when the total
known plus this process's requests not yet added reach the limit: every process sees the others' requests
within about a second, so a caller spread over N processes can exceed the limit by at most a second of their
traffic. `SHAREDCARE_API_RATE_PER_MINUTE` (default 6000; 0: no limit).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from service.auth.ratelimit import hit, too_many
from service.background import ProcessThread

log = logging.getLogger("sharedcare.auth")

WINDOW = 60
SYNC_SECONDS = 1.0


class ApiThrottle:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._window = 0
        self._unsent: dict[str, int] = {}  # requests this process counted, not yet added to the shared counters
        self._known: dict[str, int] = {}  # each caller's total across processes, as of the last sync
        self._db: Any = None
        self._worker = ProcessThread("api-rate-limit", self._run)

    def check(self, key: str, db: Any, now: float | None = None) -> None:
        """Count one request by `key`; 429 when the caller is over the limit in this window."""
        if self.per_minute <= 0:
            return
        now = time.time() if now is None else now
        window = int(now // WINDOW * WINDOW)
        with self._lock:
            if window != self._window:  # a new minute: every count starts again
                self._window, self._unsent, self._known = window, {}, {}
            seen = self._known.get(key, 0) + self._unsent.get(key, 0)
            if seen >= self.per_minute:
                raise too_many("requests", max(1, int(window + WINDOW - now)))
            self._unsent[key] = self._unsent.get(key, 0) + 1
        self._db = db
        self._worker.ensure()

    def sync(self, now: float | None = None) -> None:
        """Add what this process counted to the shared counters and learn the totals."""
        current = int((time.time() if now is None else now) // WINDOW * WINDOW)
        with self._lock:
            window, unsent = self._window, self._unsent
            self._unsent = {}
        if not unsent or self._db is None or window != current:  # (a past minute's counts no longer matter)
            return
        totals: dict[str, int] = {}
        try:
            with self._db.write() as conn:
                for key in sorted(unsent):  # (a fixed order: no deadlock between processes)
                    totals[key] = hit(conn, f"api:{key}", WINDOW, now=window + 0.5, amount=unsent[key])
        except Exception as exc:  # noqa: BLE001  (the limit is best effort when the database is away)
            log.warning("rate limit: could not share counts (%s)", type(exc).__name__)
            with self._lock:
                if self._window == window:
                    for key, n in unsent.items():
                        self._unsent[key] = self._unsent.get(key, 0) + n
            return
        with self._lock:
            if self._window == window:
                for key, total in totals.items():
                    self._known[key] = max(self._known.get(key, 0), total)

    def _run(self) -> None:
        while True:
            time.sleep(SYNC_SECONDS)
            self.sync()
