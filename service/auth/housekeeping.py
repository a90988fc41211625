"""Removing what has expired from the identity tables: used client-assertion ids, revoked token ids,
authorization codes, refresh tokens and rate-limit counters. Every row carries its own expiry, so any
worker may purge at any time; the token endpoint does it on its first request and then at most once a
minute per process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.engine import Connection

from service.auth.tables import (
    auth_assertion_jti,
    auth_code,
    auth_rate_limit,
    auth_refresh_token,
    auth_revoked,
)

EVERY = 60.0


def purge_expired(conn: Connection, settings: Any, now: int | None = None) -> dict[str, int]:
    """Delete expired rows; returns how many went from each table. Rotated and revoked refresh tokens stay
    until they expire (a rotated one presented again must still be recognised as reuse)."""
    t = int(now if now is not None else time.time())
    oldest_window = t - 2 * max(settings.login_lockout_seconds, 60)
    done = {}
    for table, condition in ((auth_assertion_jti, auth_assertion_jti.c.expires_at < t),
                             (auth_revoked, auth_revoked.c.expires_at < t),
                             (auth_code, auth_code.c.expires_at < t),
                             (auth_refresh_token, auth_refresh_token.c.expires_at < t),
                             (auth_rate_limit, auth_rate_limit.c.window_start < oldest_window)):
        done[table.name] = conn.execute(table.delete().where(condition)).rowcount
    return done


class Purger:
    """Runs `purge_expired` at most every EVERY seconds in this process (a timer, not shared state)."""

    def __init__(self, every: float = EVERY) -> None:
        self.every = every
        self._last = float("-inf")  # the first token request of a process purges
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every:
                return False
            self._last = now
            return True

    def maybe(self, conn: Connection, settings: Any) -> None:
        if self.due():
            purge_expired(conn, settings)
