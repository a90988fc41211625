"""Sealing the audit log: batches of rows, chained and MACed under a key the database does not hold.

A seal covers the rows not yet sealed, as ranges of consecutive `seq` (every row with lo <= seq <= hi is in it;
a gap, where a rolled-back transaction took a number, splits a range). It keeps a hash chain over the rows'
digests (`root`; every column of every row, service/audit/rows.py `digest`), their short digests (to name a
bad row), the previous seal's MAC and its own MAC = HMAC-SHA256(key, id | sealed_at | ranges | count | root |
prev_mac). The key comes from `SHAREDCARE_AUDIT_KEY`, else the file `SHAREDCARE_AUDIT_KEY_FILE`, else
`<keys_dir>/audit-seal-key`; never from the database. That file is made (0600) only in demo mode or by
`sharedcare keys generate`, like the signing keys and the server secret: outside demo mode a missing key is a
configuration error naming where it was looked for, so no server seals under a key of its own. Each seal's head
(id, MAC) is also appended to the anchor file
(`SHAREDCARE_AUDIT_ANCHOR`, default `<var_dir>/audit-anchor.jsonl`), out of the database's reach.

Rows are sealed once they are MARGIN seconds old (the time a row's transaction takes to commit); a row whose
transaction took longer (a straggler below the newest seal) is picked up by the next seal. One sealer at a
time: an advisory lock on PostgreSQL, the write lock on SQLite. Every server seals what is pending every
`SHAREDCARE_AUDIT_SEAL_SECONDS` (default 2); `sharedcare audit seal` seals everything pending now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from service import tracing
from service.audit.rows import digest
from service.audit.tables import audit_log as A
from service.audit.tables import audit_seal as S
from service.background import ProcessThread
from service.clock import now_us
from service.secrets import create_file

log = logging.getLogger("sharedcare.audit")

MARGIN_US = 1_000_000
STRAGGLERS = 5000  # how far below the newest seal to look for rows that committed late
BATCH = 5000
LOCK_KEY = 7_460_221  # the advisory lock one sealer holds


def key_path(settings: Any) -> Path:
    return Path(settings.audit_key_file or Path(settings.keys_dir) / "audit-seal-key")


def load_key(settings: Any, *, create: bool | None = None) -> bytes:
    """The seal key; `create` (default: in demo mode) makes the keys directory's file when nothing is configured."""
    if settings.audit_key is not None:  # (its length is checked with the rest of the configuration)
        return str(settings.audit_key.get_secret_value()).encode()
    path = key_path(settings)
    if not path.exists():
        if settings.audit_key_file:
            raise SystemExit(f"configuration error: SHAREDCARE_AUDIT_KEY_FILE names {path}, which does not exist")
        if not (settings.demo if create is None else create):
            raise SystemExit(f"configuration error: no audit seal key: set SHAREDCARE_AUDIT_KEY or "
                             f"SHAREDCARE_AUDIT_KEY_FILE, or run `sharedcare keys generate` to create {path} (shared "
                             "by every server)")
        create_file(path, secrets.token_hex(32).encode())
    key = path.read_bytes().strip()
    if len(key) < 16:
        raise SystemExit(f"configuration error: {path} is too short to be an audit seal key (at least 16 bytes)")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"sharedcare-audit-key:" + key).hexdigest()[:16]


def chain(digests: list[str]) -> str:
    h = ""
    for d in digests:
        h = hashlib.sha256((h + d).encode()).hexdigest()
    return h


def mac(key: bytes, seal_id: int, sealed_at: int, ranges: str, count: int, root: str, prev_mac: str) -> str:
    msg = f"{seal_id}|{sealed_at}|{ranges}|{count}|{root}|{prev_mac}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def ranges_of(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


@dataclass(frozen=True)
class Sealed:
    id: int
    count: int
    mac: str


def _lock(conn: Connection) -> bool:
    if conn.dialect.name == "postgresql":
        return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar())
    return True  # SQLite: the write unit already holds the database's write lock


def _covered(conn: Connection, low: int) -> list[tuple[int, int]]:
    """The sealed ranges that reach above `low`."""
    out: list[tuple[int, int]] = []
    for (ranges,) in conn.execute(select(S.c.ranges).order_by(S.c.id.desc()).limit(200)):
        rs = [(int(lo), int(hi)) for lo, hi in json.loads(ranges)]
        out += [r for r in rs if r[1] > low]
        if rs and rs[-1][1] <= low:
            break
    return out


def seal_pending(conn: Connection, key: bytes, *, margin_us: int = MARGIN_US, now: int | None = None) -> Sealed | None:
    """Seal the rows that are old enough and not sealed yet, in this (write) transaction; None when there were
    none (or another sealer holds the lock)."""
    if not _lock(conn):
        return None
    now = now if now is not None else now_us()
    last = conn.execute(select(S).order_by(S.c.id.desc()).limit(1)).first()
    top = max((hi for lo, hi in json.loads(last.ranges)), default=0) if last is not None else 0
    low = max(0, top - STRAGGLERS)
    covered = _covered(conn, low)
    stmt = select(A).where(A.c.seq > low, A.c.recorded <= now - margin_us)
    if covered:
        stmt = stmt.where(*[~A.c.seq.between(lo, hi) for lo, hi in covered])
    rows = list(conn.execute(stmt.order_by(A.c.seq).limit(BATCH)))
    if not rows:
        return None
    digests = [digest(r) for r in rows]
    seal_id = (last.id + 1) if last is not None else 1
    rng = json.dumps(ranges_of([r.seq for r in rows]), separators=(",", ":"))
    root = chain(digests)
    prev = last.mac if last is not None else ""
    m = mac(key, seal_id, now, rng, len(rows), root, prev)
    conn.execute(S.insert().values(id=seal_id, sealed_at=now, ranges=rng, count=len(rows),
                                   digests="".join(d[:16] for d in digests), root=root, prev_mac=prev, mac=m,
                                   key_id=key_id(key)))
    return Sealed(seal_id, len(rows), m)


def anchor(path: Path, sealed: list[Sealed]) -> None:
    """Append seal heads to the anchor file (one JSON line each; appends of a line are atomic)."""
    if not sealed:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"seal": s.id, "mac": s.mac, "count": s.count, "at": now_us()}) + "\n" for s in sealed)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def seal_all(db: Any, settings: Any, *, margin_us: int = MARGIN_US) -> list[Sealed]:
    """Seal everything pending (batch after batch), anchoring each head; the seals made."""
    key = load_key(settings)
    made: list[Sealed] = []
    while True:
        with db.write() as conn:
            s = seal_pending(conn, key, margin_us=margin_us)
        if s is None:
            break
        made.append(s)
        anchor(settings.anchor_path, [s])
        if s.count < BATCH:
            break
    return made


def newest(conn: Connection) -> Any:
    return conn.execute(select(S).order_by(S.c.id.desc()).limit(1)).first()


def unsealed_count(conn: Connection) -> int:
    last = newest(conn)
    if last is None:
        return int(conn.execute(select(func.count()).select_from(A)).scalar_one())
    top = max(hi for lo, hi in json.loads(last.ranges))
    return int(conn.execute(select(func.count()).select_from(A).where(A.c.seq > top)).scalar_one())


class Sealer:
    """The server's own sealer: a daemon thread sealing what is pending every few seconds (any number of
    processes may run one: the lock lets one seal at a time)."""

    def __init__(self, db: Any, settings: Any, spool_flush: Any = None) -> None:
        self.db, self.settings, self.spool_flush = db, settings, spool_flush
        self._thread = ProcessThread("audit-sealer", self._run)

    def start(self) -> None:
        if self.settings.audit_seal_seconds > 0:
            self._thread.ensure()

    def _run(self) -> None:
        while True:
            time.sleep(self.settings.audit_seal_seconds)
            try:
                if self.spool_flush is not None:
                    self.spool_flush()
                started = time.perf_counter()
                with tracing.background("audit seal"):  # (its own trace, when tracing is on: service/tracing)
                    made = seal_all(self.db, self.settings)
                    tracing.note(**{"sharedcare.audit.seals": len(made),
                                    "sharedcare.audit.sealed_rows": sum(s.count for s in made)})
                from service.metrics import observe_seal  # (/metrics: seal latency and rows sealed)

                observe_seal(time.perf_counter() - started, sum(s.count for s in made))
            except Exception as exc:  # noqa: BLE001  (the database may be away: try again next time)
                log.warning("audit: sealing failed this time (%s: %s)", type(exc).__name__, str(exc)[:200])


__all__ = ["Sealer", "anchor", "chain", "digest", "mac", "seal_all", "seal_pending"]
