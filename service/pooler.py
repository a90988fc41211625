"""Running behind a transaction-pooling connection pooler (pgbouncer with `pool_mode = transaction`).

`SHAREDCARE_DATABASE_POOLER=transaction` says that `SHAREDCARE_DATABASE_URL` points at such a pooler: each
transaction (and each statement of an autocommit read) may run on a different server connection, so nothing
may rely on session state. What changes then (`service/db.py`, `service/audit/log.py`):
- psycopg never prepares statements on the server (`prepare_threshold=None`): a statement prepared on one server
  connection is unknown on the next (pgbouncer before 1.21 does not track prepared statements);
- no session `SET statement_timeout` on connect (it would stick to whichever server connection ran it): every
  statement gets the limit from the role's own default, which the operator sets once (`ALTER ROLE ... SET
  statement_timeout`). The first connection of each process checks it; when it differs, a warning is logged and
  every write transaction starts with `SET LOCAL statement_timeout` (a round trip per write, measured at 0.4 ms
  on a loaded machine, saved when the role is set right); autocommit reads cannot be bounded that way.
Everything else the service does on PostgreSQL is already transaction-scoped (row locks, `SKIP LOCKED` queues,
the audit sealer's `pg_try_advisory_xact_lock`, the rate limiter's upsert). See the README, "Behind pgbouncer".
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("sharedcare.db")

def pooler_mode(settings: Any = None) -> str:
    """`none` (a direct connection, or a session-mode pooler) or `transaction`: `Settings.database_pooler`
    (`SHAREDCARE_DATABASE_POOLER`); `none` without settings."""
    return str(settings.database_pooler) if settings is not None else "none"


def connect_args(pooled: bool) -> dict[str, Any]:
    """psycopg connection arguments: no server-side prepared statements behind a transaction pooler."""
    return {"prepare_threshold": None} if pooled else {}


_role_default: dict[str, bool] = {}  # "matches": the role's default statement_timeout is the configured one


def role_timeout_matches() -> bool:
    """Whether this process found the role's default statement_timeout equal to the configured one (then write
    transactions need no SET LOCAL of their own)."""
    return _role_default.get("matches", False)


def check_statement_timeout(dbapi_conn: Any, ms: int) -> None:
    """Once per process, on the first pooled connection: does the role's default `statement_timeout` (what every
    statement gets behind the pooler) match the configured limit? A warning if not (reads run unbounded or bounded
    differently until the operator sets it; writes then set their own)."""
    if "matches" in _role_default:
        return
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        row = dbapi_conn.execute("SELECT current_setting('statement_timeout'), current_user, current_database()"
                                 ).fetchone()
    finally:
        dbapi_conn.autocommit = autocommit
    current = _milliseconds(row[0])
    _role_default["matches"] = current == ms
    if current != ms:
        log.warning("behind a transaction pooler the statement timeout of reads is the database role's default: "
                    "it is %s, SHAREDCARE_STATEMENT_TIMEOUT_SECONDS asks for %d ms; set it with ALTER ROLE \"%s\" "
                    "IN DATABASE \"%s\" SET statement_timeout = %d (writes now use SET LOCAL and are bounded either "
                    "way)", row[0], ms, row[1], row[2], ms)


def _milliseconds(setting: str) -> int | None:
    """PostgreSQL's display of a time setting (`0`, `250ms`, `15s`, `2min`, `1h`, `1d`) in milliseconds."""
    units = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
    s = setting.strip()
    for unit in sorted(units, key=len, reverse=True):
        if s.endswith(unit) and s[: -len(unit)].strip().isdigit():
            return int(s[: -len(unit)]) * units[unit]
    return int(s) if s.isdigit() else None
