"""The versioned record store: one method per storage interaction, SQL Core, no policy.

Policy, audit and validation sit above this (service.interactions); search indexing plugs in as a
write listener called inside the same database transaction as the write, so indexes never drift.

Concurrency: a write that depends on the current version locks the row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite writers hold the database write lock from BEGIN IMMEDIATE), and every version is
unique on (type, id, version), so two updates with the same If-Match can never both succeed and the
version chain can never fork.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service.fhir.outcome import OperationOutcomeError, conflict, gone, not_found, precondition_failed
from service.storage.clock import fhir_instant, now_us
from service.storage.tables import resource as R
from service.storage.tables import resource_version as V


@dataclass(frozen=True)
class Stored:
    """One stored version. `content` is the canonical JSON exactly as served (None when deleted)."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes | None
    method: str = ""
    seq: int = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def json(self) -> dict[str, Any]:
        assert self.content is not None
        return orjson.loads(self.content)


class WriteListener(Protocol):
    def __call__(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None: ...


def new_id() -> str:
    return str(uuid.uuid4())


def canonical(resource: dict[str, Any], rid: str, version: int, last_updated: int) -> bytes:
    """Set id and meta.versionId/lastUpdated and serialise; the bytes are what every read returns."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = fhir_instant(last_updated)
    body = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for k, v in resource.items():
        if k not in body:
            body[k] = v
    return orjson.dumps(body)


def _row_to_stored(row: Any) -> Stored:
    content = row.content
    return Stored(row.res_type, row.res_id, row.version, row.last_updated, bool(row.deleted),
                  content.encode() if isinstance(content, str) else content,
                  getattr(row, "method", ""), getattr(row, "seq", 0))


class Store:
    def __init__(self, *, postgres: bool) -> None:
        self.postgres = postgres
        self.listeners: list[WriteListener] = []
        # Stampers complete server-owned elements before a version is serialised (e.g. the authoring
        # organisation): (conn, resource, previous current version or None) -> None.
        self.stampers: list[Callable[[Connection, dict[str, Any], Stored | None], None]] = []

    # -- reads -----------------------------------------------------------------------------------
    def current(self, conn: Connection, rtype: str, rid: str, *, lock: bool = False) -> Stored | None:
        stmt = select(R.c.res_type, R.c.res_id, R.c.version, R.c.last_updated, R.c.deleted, R.c.content).where(
            R.c.res_type == rtype, R.c.res_id == rid)
        if lock and self.postgres:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        return _row_to_stored(row) if row else None

    def read(self, conn: Connection, rtype: str, rid: str) -> Stored:
        stored = self.current(conn, rtype, rid)
        if stored is None:
            raise not_found(f"{rtype}/{rid} is not known")
        if stored.deleted:
            raise OperationOutcomeError(410, "deleted", f"{rtype}/{rid} was deleted",
                                        headers={"ETag": stored.etag})
        return stored

    def vread(self, conn: Connection, rtype: str, rid: str, version: int) -> Stored:
        row = conn.execute(select(V).where(V.c.res_type == rtype, V.c.res_id == rid, V.c.version == version)).first()
        if row is None:
            if self.current(conn, rtype, rid) is None:
                raise not_found(f"{rtype}/{rid} is not known")
            raise not_found(f"{rtype}/{rid} has no version {version}")
        stored = _row_to_stored(row)
        if stored.deleted:
            raise gone(f"{rtype}/{rid} version {version} is a deletion")
        return stored

    def read_many(self, conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """Current, non-deleted versions for many (type, id) keys in one query."""
        if not keys:
            return {}
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            cond = or_(*[and_(R.c.res_type == t, R.c.res_id == r) for t, r in chunk])
            for row in conn.execute(select(R).where(cond, R.c.deleted.is_(False))):
                out[(row.res_type, row.res_id)] = _row_to_stored(row)
        return out

    # -- writes ----------------------------------------------------------------------------------
    def _append(self, conn: Connection, rtype: str, rid: str, version: int, lu: int, method: str,
                content: bytes | None, resource: dict[str, Any] | None, *, first: bool) -> Stored:
        deleted = content is None
        text = content.decode() if content is not None else None
        if first:
            conn.execute(insert(R).values(res_type=rtype, res_id=rid, version=version, last_updated=lu,
                                          deleted=deleted, content=text))
        else:
            res = conn.execute(update(R).where(R.c.res_type == rtype, R.c.res_id == rid,
                                               R.c.version == version - 1)
                               .values(version=version, last_updated=lu, deleted=deleted, content=text))
            if res.rowcount != 1:  # someone else moved the version on: never fork the chain
                raise precondition_failed(f"{rtype}/{rid} was changed by another request; read it again")
        conn.execute(insert(V).values(res_type=rtype, res_id=rid, version=version, last_updated=lu,
                                      method=method, deleted=deleted, content=text))
        stored = Stored(rtype, rid, version, lu, deleted, content, method)
        for listener in self.listeners:
            listener(conn, stored, resource)
        return stored

    def create(self, conn: Connection, resource: dict[str, Any], *, rid: str | None = None) -> Stored:
        rtype = resource["resourceType"]
        fresh = rid is None  # a new UUID cannot clash: no savepoint needed to turn a clash into a 409
        rid = rid or new_id()
        for stamper in self.stampers:
            stamper(conn, resource, None)
        lu = now_us()
        content = canonical(resource, rid, 1, lu)
        if fresh:
            return self._append(conn, rtype, rid, 1, lu, "POST", content, orjson.loads(content), first=True)
        try:
            with conn.begin_nested():
                return self._append(conn, rtype, rid, 1, lu, "POST", content, orjson.loads(content), first=True)
        except IntegrityError:
            raise conflict(f"{rtype}/{rid} already exists") from None

    def update(self, conn: Connection, resource: dict[str, Any], rid: str, *, if_match: int | None = None,
               method: str = "PUT", allow_create: bool = True) -> tuple[Stored, bool]:
        """Returns (stored, created). Update-as-create when the id is new (or was deleted)."""
        rtype = resource["resourceType"]
        cur = self.current(conn, rtype, rid, lock=True)
        if cur is None:
            if if_match is not None:
                raise precondition_failed(f"{rtype}/{rid} does not exist, so If-Match cannot match")
            if not allow_create:
                raise not_found(f"{rtype}/{rid} is not known")
            for stamper in self.stampers:
                stamper(conn, resource, None)
            lu = now_us()
            content = canonical(resource, rid, 1, lu)
            try:
                with conn.begin_nested():
                    return self._append(conn, rtype, rid, 1, lu, method, content, orjson.loads(content),
                                        first=True), True
            except IntegrityError:
                raise precondition_failed(f"{rtype}/{rid} was created by another request; read it again") from None
        if if_match is not None and if_match != cur.version:
            raise precondition_failed(
                f"{rtype}/{rid} is at version {cur.version}, not {if_match} (If-Match): read it again and retry")
        if cur.deleted and not allow_create:
            raise gone(f"{rtype}/{rid} was deleted")
        for stamper in self.stampers:
            stamper(conn, resource, None if cur.deleted else cur)
        version = cur.version + 1
        lu = max(now_us(), cur.last_updated + 1)
        content = canonical(resource, rid, version, lu)
        return self._append(conn, rtype, rid, version, lu, method, content, orjson.loads(content),
                            first=False), cur.deleted

    def delete(self, conn: Connection, rtype: str, rid: str, *, if_match: int | None = None) -> Stored | None:
        """Logical delete: a new version marked deleted. None when there was nothing to delete."""
        cur = self.current(conn, rtype, rid, lock=True)
        if cur is None or cur.deleted:
            if if_match is not None:
                raise precondition_failed(f"{rtype}/{rid} does not exist, so If-Match cannot match")
            return None
        if if_match is not None and if_match != cur.version:
            raise precondition_failed(f"{rtype}/{rid} is at version {cur.version}, not {if_match} (If-Match)")
        lu = max(now_us(), cur.last_updated + 1)
        return self._append(conn, rtype, rid, cur.version + 1, lu, "DELETE", None, None, first=False)

    # -- history ---------------------------------------------------------------------------------
    def history(self, conn: Connection, *, rtype: str | None = None, rid: str | None = None,
                since: int | None = None, before: tuple[int, int] | None = None, count: int = 20,
                at_or_before: int | None = None) -> list[Stored]:
        """Versions newest first. `before` is a keyset cursor (last_updated, seq) for paging."""
        stmt = select(V)
        if rtype is not None:
            stmt = stmt.where(V.c.res_type == rtype)
        if rid is not None:
            stmt = stmt.where(V.c.res_id == rid)
        if since is not None:
            stmt = stmt.where(V.c.last_updated >= since)
        if at_or_before is not None:
            stmt = stmt.where(V.c.last_updated <= at_or_before)
        if before is not None:
            lu, seq = before
            stmt = stmt.where(or_(V.c.last_updated < lu, and_(V.c.last_updated == lu, V.c.seq < seq)))
        stmt = stmt.order_by(V.c.last_updated.desc(), V.c.seq.desc()).limit(count)
        return [_row_to_stored(r) for r in conn.execute(stmt)]

    def history_count(self, conn: Connection, *, rtype: str | None = None, rid: str | None = None,
                      since: int | None = None) -> int:
        from sqlalchemy import func

        stmt = select(func.count()).select_from(V)
        if rtype is not None:
            stmt = stmt.where(V.c.res_type == rtype)
        if rid is not None:
            stmt = stmt.where(V.c.res_id == rid)
        if since is not None:
            stmt = stmt.where(V.c.last_updated >= since)
        return int(conn.execute(stmt).scalar_one())


ListenerFactory = Callable[[], WriteListener]
