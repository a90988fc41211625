"""The export queue in the database: kick-off, claim (PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED`; SQLite's
single writer polls the same table), the worker's lease, files and chunks, finish, cancel and expiry.

A job is claimed with a lease (`lease_until_us`); its worker renews it in the same transaction as every chunk it
writes, and that statement only matches while the job is still this worker's and still running, so a worker that
lost its job (cancelled, or taken over after its lease ran out) writes nothing more. A job whose worker died is
claimed again once the lease has run out and starts afresh (its partial files are deleted first).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from service.clock import now_us
from service.export.tables import export_chunk as C
from service.export.tables import export_file as F
from service.export.tables import export_job as J

log = logging.getLogger("sharedcare.export")

MAX_ATTEMPTS = 3  # runs of one job (a job that kills its worker each time is failed, not retried forever)
QUEUE_DAYS = 7  # a job still queued or running after this long expires
ACTIVE = ("queued", "running")


class LostJob(Exception):
    """The job is no longer this worker's (cancelled, expired, or claimed by another after the lease ran out)."""


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    level: str
    group_id: str | None
    spec: str
    owner: str
    client_id: str | None
    caller: str
    created_us: int
    transaction_us: int | None
    worker: str | None
    attempts: int
    progress: str | None
    exported: int
    error: str | None
    finished_us: int | None
    expires_us: int

    @classmethod
    def of(cls, row: Any) -> Job:
        return cls(*row)  # (selected in the fields' order: see `get`)


def new_id() -> str:
    return uuid.uuid4().hex


def create(conn: Connection, *, level: str, group_id: str | None, spec: str, owner: str, client_id: str | None,
           caller: str) -> str:
    jid = new_id()
    now = now_us()
    conn.execute(insert(J).values(id=jid, state="queued", level=level, group_id=group_id, spec=spec, owner=owner,
                                  client_id=client_id, caller=caller, created_us=now, attempts=0, exported=0,
                                  progress="queued", expires_us=now + QUEUE_DAYS * 86400 * 1_000_000))
    return jid


def active_count(conn: Connection, owner: str, client_id: str | None) -> int:
    return int(conn.execute(select(func.count()).select_from(J).where(
        J.c.owner == owner, J.c.client_id.is_(None) if client_id is None else J.c.client_id == client_id,
        J.c.state.in_(ACTIVE))).scalar_one())


def get(conn: Connection, jid: str) -> Job | None:
    row = conn.execute(select(*[J.c[k] for k in Job.__dataclass_fields__]).where(J.c.id == jid)).first()
    return Job.of(row) if row is not None else None


def _claimable(now: int) -> Any:
    return or_(J.c.state == "queued", and_(J.c.state == "running", J.c.lease_until_us < now))


def pending(db: Any) -> bool:
    """Cheap look (a read, no lock): is there anything to claim?"""
    with db.read() as conn:
        return conn.execute(select(J.c.id).where(_claimable(now_us())).limit(1)).first() is not None


def claim(db: Any, worker: str, lease_seconds: float) -> Job | None:
    """The oldest claimable job, now this worker's (state running, a fresh lease, one more attempt), or None.
    PostgreSQL: the row is taken with FOR UPDATE SKIP LOCKED, so concurrent workers never claim the same job."""
    while True:
        now = now_us()
        with db.write() as conn:
            row = conn.execute(select(J.c.id, J.c.attempts).where(_claimable(now)).order_by(J.c.created_us)
                               .limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            if row.attempts >= MAX_ATTEMPTS:
                conn.execute(update(J).where(J.c.id == row.id).values(
                    state="failed", error=f"the export stopped {row.attempts} times without finishing (its worker "
                    "died each time); it was given up", finished_us=now, lease_until_us=None))
                _drop_files(conn, row.id)
                log.error("export %s given up after %d attempts", row.id, row.attempts)
                continue
            conn.execute(update(J).where(J.c.id == row.id).values(
                state="running", worker=worker, lease_until_us=now + int(lease_seconds * 1_000_000),
                attempts=J.c.attempts + 1, transaction_us=now, exported=0, progress="started"))
            _drop_files(conn, row.id)  # a run starts afresh (a dead worker's partial files go)
            return get(conn, row.id)


def _drop_files(conn: Connection, jid: str) -> None:
    conn.execute(delete(C).where(C.c.job_id == jid))
    conn.execute(delete(F).where(F.c.job_id == jid))


def _renew(conn: Connection, job: Job, lease_seconds: float, progress: str | None, exported: int | None) -> None:
    values: dict[str, Any] = {"lease_until_us": now_us() + int(lease_seconds * 1_000_000)}
    if progress is not None:
        values["progress"] = progress[:256]
    if exported is not None:
        values["exported"] = exported
    done = conn.execute(update(J).where(J.c.id == job.id, J.c.worker == job.worker, J.c.state == "running")
                        .values(**values))
    if done.rowcount != 1:
        raise LostJob(job.id)


def renew(db: Any, job: Job, lease_seconds: float, progress: str | None = None, exported: int | None = None) -> None:
    with db.write() as conn:
        _renew(conn, job, lease_seconds, progress, exported)


def write_chunk(db: Any, job: Job, lease_seconds: float, file_seq: int, seq: int, data: bytes,
                progress: str, exported: int) -> None:
    """A chunk of a file, in one transaction with the lease check (nothing is written for a lost job)."""
    with db.write() as conn:
        _renew(conn, job, lease_seconds, progress, exported)
        conn.execute(insert(C).values(job_id=job.id, file_seq=file_seq, seq=seq, data=data))


def close_file(db: Any, job: Job, lease_seconds: float, file_seq: int, rtype: str, count: int, size: int,
               patients: list[str], progress: str, exported: int, last: tuple[int, bytes] | None) -> None:
    with db.write() as conn:
        _renew(conn, job, lease_seconds, progress, exported)
        if last is not None:
            conn.execute(insert(C).values(job_id=job.id, file_seq=file_seq, seq=last[0], data=last[1]))
        conn.execute(insert(F).values(job_id=job.id, seq=file_seq, res_type=rtype, count=count, bytes=size,
                                      patients=" ".join(patients)))


def finish(db: Any, job: Job, ttl_seconds: int, exported: int) -> None:
    now = now_us()
    with db.write() as conn:
        done = conn.execute(update(J).where(J.c.id == job.id, J.c.worker == job.worker, J.c.state == "running")
                            .values(state="done", finished_us=now, lease_until_us=None, exported=exported,
                                    progress=f"done: {exported} resources",
                                    expires_us=now + ttl_seconds * 1_000_000))
        if done.rowcount != 1:
            raise LostJob(job.id)


def fail(db: Any, job: Job, error: str, ttl_seconds: int) -> None:
    now = now_us()
    with db.write() as conn:
        conn.execute(update(J).where(J.c.id == job.id, J.c.worker == job.worker, J.c.state == "running").values(
            state="failed", error=error[:4000], finished_us=now, lease_until_us=None,
            expires_us=now + ttl_seconds * 1_000_000))
        _drop_files(conn, job.id)


def release(db: Any, job: Job) -> None:
    """Give a job back to the queue (its run broke on something passing, such as the database going away)."""
    with db.write() as conn:
        conn.execute(update(J).where(J.c.id == job.id, J.c.worker == job.worker, J.c.state == "running").values(
            state="queued", worker=None, lease_until_us=None, progress="queued again"))
        _drop_files(conn, job.id)


def cancel(db: Any, jid: str, ttl_seconds: int) -> bool:
    """Cancel a job (queued, running or done) and delete its files; False if it was already gone."""
    now = now_us()
    with db.write() as conn:
        done = conn.execute(update(J).where(J.c.id == jid, J.c.state.in_(("queued", "running", "done", "failed")))
                            .values(state="cancelled", lease_until_us=None, finished_us=now,
                                    expires_us=now + ttl_seconds * 1_000_000))
        _drop_files(conn, jid)
        return done.rowcount == 1


def files(conn: Connection, jid: str) -> list[Any]:
    return list(conn.execute(select(F.c.seq, F.c.res_type, F.c.count, F.c.bytes).where(F.c.job_id == jid)
                             .order_by(F.c.seq)))


def file_row(conn: Connection, jid: str, seq: int) -> Any:
    return conn.execute(select(F.c.res_type, F.c.count, F.c.bytes, F.c.patients).where(
        F.c.job_id == jid, F.c.seq == seq)).first()


def chunk(conn: Connection, jid: str, file_seq: int, seq: int) -> bytes | None:
    data = conn.execute(select(C.c.data).where(C.c.job_id == jid, C.c.file_seq == file_seq, C.c.seq == seq)).scalar()
    return bytes(data) if data is not None else None


def purge_expired(db: Any) -> int:
    """Delete the jobs (and their files) whose time is up; returns how many."""
    now = now_us()
    with db.write() as conn:
        ids = [r[0] for r in conn.execute(select(J.c.id).where(J.c.expires_us < now).limit(100))]
        for jid in ids:
            _drop_files(conn, jid)
        if ids:
            conn.execute(delete(J).where(J.c.id.in_(ids)))
    return len(ids)
