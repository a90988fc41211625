"""The hash chains that make the audit trail tamper-evident, and their verification.

Every AuditEvent is appended to one of LANES chains ("lanes"), chosen from the request id, so
concurrent requests mostly append to different lanes and lock different head rows (PostgreSQL
`SELECT ... FOR UPDATE` on `audit_lane`; the lock is taken as the last step of the transaction and
held only until its commit). All events of one transaction go to the same lane, so a transaction
never holds two lane locks (no lock-order deadlocks).

An event's hash is SHA-256 over: the previous hash in its lane, the lane, its position (seq), the
recorded time, the event id and the exact stored bytes of the AuditEvent:

    sha256(f"{prev}\\n{lane}\\n{seq}\\n{recorded}\\n{event_id}\\n".encode() + content)

`verify` walks every lane in order and recomputes each hash from the stored content, so it finds an
altered event (content or chain row), a removed one (a gap in positions, or a chain row whose event
is gone), reordered ones (a row whose prev_hash is not its predecessor's hash), a truncated tail (the
lane head is ahead of the last row) and events inserted outside the chain.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service.audit.tables import audit_chain as C
from service.audit.tables import audit_lane as L
from service.storage.tables import resource as R
from service.storage.tables import resource_version as V

LANES = 16
GENESIS = "0" * 64
_LANE_KEY = "sharedcare.audit.lane"


def lane_for(key: str) -> int:
    return zlib.crc32(key.encode()) % LANES


def event_hash(prev: str, lane: int, seq: int, recorded: int, event_id: str, content: bytes) -> str:
    h = hashlib.sha256(f"{prev}\n{lane}\n{seq}\n{recorded}\n{event_id}\n".encode())
    h.update(content)
    return h.hexdigest()


def _txn_lane(conn: Connection, key: str) -> int:
    """The lane of this transaction: the first append picks it, later ones reuse it."""
    txn = conn.get_transaction()
    pinned = conn.info.get(_LANE_KEY)
    if pinned is not None and pinned[0] is txn:
        return pinned[1]
    lane = lane_for(key)
    conn.info[_LANE_KEY] = (txn, lane)
    return lane


def _lock_head(conn: Connection, lane: int, postgres: bool) -> tuple[int, str]:
    stmt = select(L.c.seq, L.c.head_hash).where(L.c.lane == lane)
    if postgres:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is not None:
        return int(row.seq), row.head_hash
    try:
        with conn.begin_nested():
            conn.execute(insert(L).values(lane=lane, seq=0, head_hash=GENESIS))
    except IntegrityError:  # another transaction created it first; it is committed now
        pass
    row = conn.execute(stmt).one()
    return int(row.seq), row.head_hash


def append(conn: Connection, event_id: str, recorded: int, content: bytes, *, key: str,
           postgres: bool) -> tuple[int, int, str]:
    """Chain one stored AuditEvent; call it as late as possible in the transaction. Returns (lane, seq, hash)."""
    lane = _txn_lane(conn, key)
    seq, prev = _lock_head(conn, lane, postgres)
    seq += 1
    digest = event_hash(prev, lane, seq, recorded, event_id, content)
    conn.execute(insert(C).values(lane=lane, seq=seq, event_id=event_id, recorded=recorded, prev_hash=prev,
                                  hash=digest))
    conn.execute(update(L).where(L.c.lane == lane).values(seq=seq, head_hash=digest))
    return lane, seq, digest


# -- verification --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    lane: int
    seq: int
    event_id: str | None
    recorded: int
    reason: str

    def describe(self) -> str:
        who = f"AuditEvent/{self.event_id}" if self.event_id else "an event"
        return f"{who} (lane {self.lane}, position {self.seq}): {self.reason}"


@dataclass
class Report:
    events: int
    lanes: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The earliest bad event (by recorded time, then lane and position)."""
        return min(self.problems, key=lambda p: (p.recorded, p.lane, p.seq)) if self.problems else None


def _rows(conn: Connection, lane: int, batch: int = 2000) -> Iterator[Any]:
    cur = conn.execute(
        select(C.c.seq, C.c.event_id, C.c.recorded, C.c.prev_hash, C.c.hash, R.c.content, R.c.version,
               R.c.deleted, V.c.content.label("v_content"))
        .select_from(C.outerjoin(R, and_(R.c.res_type == "AuditEvent", R.c.res_id == C.c.event_id))
                     .outerjoin(V, and_(V.c.res_type == "AuditEvent", V.c.res_id == C.c.event_id,
                                        V.c.version == 1)))
        .where(C.c.lane == lane).order_by(C.c.seq)
        .execution_options(yield_per=batch))
    yield from cur


def _row_problem(row: Any, lane: int, expected: int, prev: str) -> str | None:
    seq = int(row.seq)
    if seq != expected:
        missing = f"position {expected} is" if seq == expected + 1 else f"positions {expected}-{seq - 1} are"
        return f"{missing} missing before it (an event was removed)"
    if row.prev_hash != prev:
        return "does not follow its predecessor (events reordered, or a chain row altered)"
    content = row.content
    if content is None:
        return "the AuditEvent is missing from the store (deleted)"
    if row.version != 1 or row.deleted:
        return f"the AuditEvent was changed (it is at version {row.version})"
    data = content.encode() if isinstance(content, str) else content
    if event_hash(prev, lane, seq, int(row.recorded), row.event_id, data) != row.hash:
        return "its content does not match its hash (the event or its chain row was altered)"
    v_content = row.v_content
    if (v_content.encode() if isinstance(v_content, str) else v_content) != data:
        return "its copy in the version history differs from the event (altered or removed)"
    return None


def _check_lane(conn: Connection, lane: int, head: tuple[int, str] | None) -> tuple[int, Problem | None]:
    expected, prev, count, last_recorded = 1, GENESIS, 0, 0
    for row in _rows(conn, lane):
        count += 1
        reason = _row_problem(row, lane, expected, prev)
        if reason is not None:
            return count, Problem(lane, int(row.seq), row.event_id, int(row.recorded), reason)
        last_recorded = int(row.recorded)
        prev = row.hash
        expected += 1
    if head is not None and (head[0] != expected - 1 or head[1] != prev):
        return count, Problem(lane, expected, None, last_recorded,
                              f"the lane head is at position {head[0]} but the chain ends at {expected - 1} "
                              "(newest events removed, or the head altered)")
    return count, None


def verify(conn: Connection) -> Report:
    heads = {int(r.lane): (int(r.seq), r.head_hash) for r in conn.execute(select(L.c.lane, L.c.seq, L.c.head_hash))}
    lanes = sorted(set(heads) | {int(x) for (x,) in conn.execute(select(C.c.lane).distinct())})
    problems: list[Problem] = []
    total = 0
    for lane in lanes:
        count, problem = _check_lane(conn, lane, heads.get(lane))
        total += count
        if problem is not None:
            problems.append(problem)
    stray = conn.execute(
        select(R.c.res_id, R.c.last_updated).select_from(
            R.outerjoin(C, C.c.event_id == R.c.res_id))
        .where(R.c.res_type == "AuditEvent", C.c.event_id.is_(None)).order_by(R.c.last_updated).limit(1)).first()
    if stray is not None:
        problems.append(Problem(-1, 0, stray.res_id, int(stray.last_updated),
                                "is not in any chain (inserted outside the audit trail)"))
    return Report(total, len(lanes), problems)


def count_events(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(C)).scalar_one())
