"""The versioned record store: one method per storage interaction, SQL Core, no policy.

Only the repository (service.repository) uses it: policy, audit and validation sit there. Search indexing
and the care relationships plug in as write listeners called inside the same database transaction as the
write, so they never drift from the record.

Every version carries its owners (service.ownership), worked out here at write time with the record at
hand for what a resource refers to (a Provenance belongs to its target's patient).

Concurrency: a write that depends on the current version locks the row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite writers hold the database write lock from BEGIN IMMEDIATE), and every version is
unique on (type, id, version), so two updates with the same If-Match can never both succeed and the
version chain can never fork.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
from sqlalchemy import and_, bindparam, insert, or_, select, text, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service import held, ownership
from service.clock import fhir_instant, now_us
from service.db import Prepared
from service.fhir.decimals import decimals_of, restore
from service.fhir.outcome import conflict, precondition_failed
from service.fhir.stored import Stored
from service.storage.tables import resource as R
from service.storage.tables import resource_version as V

__all__ = ["Store", "Stored", "canonical", "new_id", "row_to_stored"]

CURRENT_COLUMNS = (R.c.res_type, R.c.res_id, R.c.version, R.c.last_updated, R.c.deleted, R.c.content, R.c.owners)

# A write's two row inserts, compiled once per dialect and run on the driver's cursor (service.db.Prepared)
_CURRENT_VALUES = ("res_type", "res_id", "version", "last_updated", "deleted", "content", "patient_id", "owners")
_INSERT_CURRENT = Prepared(lambda _d: insert(R).values({c: bindparam(c) for c in _CURRENT_VALUES}))
_INSERT_VERSION = Prepared(lambda _d: insert(V).values({c: bindparam(c) for c in (*_CURRENT_VALUES, "method")}))


def _record_ctes(guarded: bool = False) -> list[str]:
    """PostgreSQL: a new resource's current row and first version, as data-modifying CTEs (the content sent once).
    `guarded`: written only when the CTE `go` has its row (service/held.py)."""
    cols = ", ".join(_CURRENT_VALUES)
    values = ", ".join(f":{c}" for c in _CURRENT_VALUES)
    source = (lambda v: f"SELECT {v} FROM go") if guarded else (lambda v: f"VALUES ({v})")
    return [f"c AS (INSERT INTO {R.name} ({cols}) {source(values)})",
            f"v AS (INSERT INTO {V.name} ({cols}, method) {source(values + ', :method')})"]


def _insert_both(_dialect: str) -> Any:
    """PostgreSQL: a new resource's current row and first version in one statement."""
    return text("WITH " + ", ".join(_record_ctes()) + " SELECT 1")


_PG_INSERT_BOTH = Prepared(_insert_both)


class WriteListener(Protocol):
    def __call__(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None: ...


class FirstVersionRows(Protocol):
    """Rows a listener writes for every new resource, which on PostgreSQL go into the resource's own insert
    statement (data-modifying CTEs over one JSON parameter, `:rows`): a create is one round trip for the record
    and its index. `listener` is not called for a version written so."""

    listener: WriteListener

    def ctes(self, guarded: bool = False) -> list[str]: ...  # (`guarded`: only when `go` has its row)

    def rows(self, stored: Stored, resource: dict[str, Any]) -> str: ...


class FirstVersionQuery(Protocol):
    """A listener that reads something for every new resource (the subscriptions to match it against): on
    PostgreSQL its query is the last part of the resource's own insert statement (with the first version's rows),
    and `given` is called with its rows instead of the listener."""

    listener: WriteListener  # (its `acts_on`: the types it writes for itself, beyond the deliveries `given` queues)

    def query(self) -> str: ...  # a SELECT over the insert's parameters (:res_type, :last_updated, ...)

    def given(self, conn: Connection, stored: Stored, resource: dict[str, Any], rows: list[Any]) -> None: ...


def _insert_with(companion: FirstVersionRows, query: FirstVersionQuery | None) -> Prepared:
    """`_insert_both` with a listener's rows in the same statement, and another's query as its result."""
    ctes = [*_record_ctes(), *companion.ctes()]
    tail = query.query() if query is not None else "SELECT 1"
    return Prepared(lambda _d: text("WITH " + ", ".join(ctes) + " " + tail))


def _held_with(companion: FirstVersionRows, query: FirstVersionQuery | None) -> tuple[tuple[str, ...], str]:
    """`_insert_with` held (service/held.py): written only when the query finds nothing (no subscription whose
    delivery would have to be queued with it), whose rows are then the statement's result."""
    if query is None:
        head = ["go AS (SELECT 1)"]
        tail = "SELECT 1 WHERE false"
    else:
        head = [f"s AS ({query.query()})", "go AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM s))"]
        tail = "SELECT * FROM s"
    return (*head, *_record_ctes(guarded=True), *companion.ctes(guarded=True)), tail


Stamper = Callable[[Connection, dict[str, Any], Stored | None], None]
Identified = Callable[[Connection, str, str], list[str]]


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
    return restore(orjson.dumps(body), decimals_of(resource))  # the client's decimal literals, as sent


def row_to_stored(row: Any) -> Stored:
    m = row._mapping
    content = m["content"]
    return Stored(m["res_type"], m["res_id"], m["version"], m["last_updated"], bool(m["deleted"]),
                  content.encode() if isinstance(content, str) else content,
                  m.get("method", ""), m.get("seq", 0), ownership.parse_owners(m.get("owners")))


class Store:
    def __init__(self, *, postgres: bool, listeners: Sequence[WriteListener] = (),
                 stampers: Sequence[Stamper] = (), identified: Identified | None = None,
                 first_rows: FirstVersionRows | None = None) -> None:
        self.postgres = postgres
        # (PostgreSQL) a listener's rows written in a new resource's own insert (the search index's)
        self.first_rows = first_rows
        # (PostgreSQL, with first_rows) a listener's query answered by a new resource's own insert
        self.first_query: FirstVersionQuery | None = None
        self._insert_with: tuple[FirstVersionQuery | None, Prepared] | None = None
        self._held_with: tuple[FirstVersionQuery | None, tuple[tuple[str, ...], str]] | None = None
        # (conn, system, value) -> ids of the Patients with that identifier (the search index answers it)
        self.identified = identified
        self.listeners: list[WriteListener] = list(listeners)
        # Stampers complete server-owned elements before a version is serialised (the authoring organisation).
        self.stampers: list[Stamper] = list(stampers)

    # -- reads -----------------------------------------------------------------------------------
    def current_statement(self, rtype: str, rid: str, *, lock: bool = False) -> Any:
        stmt = select(*CURRENT_COLUMNS).where(R.c.res_type == rtype, R.c.res_id == rid)
        return stmt.with_for_update() if lock and self.postgres else stmt

    def current(self, conn: Connection, rtype: str, rid: str, *, lock: bool = False) -> Stored | None:
        """The current row, deleted or not (a deleted one carries what was deleted)."""
        row = conn.execute(self.current_statement(rtype, rid, lock=lock)).first()
        return row_to_stored(row) if row else None

    def version(self, conn: Connection, rtype: str, rid: str, version: int) -> Stored | None:
        row = conn.execute(select(V).where(V.c.res_type == rtype, V.c.res_id == rid, V.c.version == version)).first()
        return row_to_stored(row) if row else None

    def read_many(self, conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """Current, non-deleted versions for many (type, id) keys in one query per 500."""
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            cond = or_(*[and_(R.c.res_type == t, R.c.res_id == r) for t, r in chunk])
            for row in conn.execute(select(*CURRENT_COLUMNS).where(cond, R.c.deleted.is_(False))):
                s = row_to_stored(row)
                out[(s.res_type, s.res_id)] = s
        return out

    def resolver(self, conn: Connection) -> ownership.Resolver:
        """What `ownership.owners` asks the record: the owners of referenced resources, and which Patient holds
        an NHS number."""

        def resolve(keys: set[str]) -> dict[str, tuple[str, ...]]:
            out: dict[str, tuple[str, ...]] = {}
            refs = sorted(tuple(k.split("/", 1)) for k in keys if "|" not in k and "/" in k)
            if refs:
                for t, i, owners in conn.execute(select(R.c.res_type, R.c.res_id, R.c.owners).where(
                        tuple_(R.c.res_type, R.c.res_id).in_(refs))):
                    out[f"{t}/{i}"] = ownership.parse_owners(owners)
            for key in sorted(k for k in keys if "|" in k):
                system, _, value = key.rpartition("|")
                ids = self.identified(conn, system, value) if self.identified is not None else []
                if len(ids) == 1:
                    out[key] = (ids[0],)
            return out

        return resolve

    # -- writes ----------------------------------------------------------------------------------
    def _append(self, conn: Connection, rtype: str, rid: str, version: int, lu: int, method: str,
                content: bytes | None, resource: dict[str, Any] | None, *, first: bool,
                kept: bytes | None = None, owners: tuple[str, ...] | None = None) -> Stored:
        """Write one version. A deletion (content None) keeps `kept` (what it deleted) on the current row."""
        deleted = content is None
        if owners is None:
            owners = ownership.owners(rtype, resource, self.resolver(conn)) if resource is not None else ()
        own_text, primary = ownership.owners_text(owners), (owners[0] if owners else None)
        current_text = (content if content is not None else kept)
        values = {"version": version, "last_updated": lu, "deleted": deleted,
                  "content": current_text.decode() if current_text is not None else None,
                  "patient_id": primary, "owners": own_text}
        stored = Stored(rtype, rid, version, lu, deleted, content, method, owners=owners)
        companion = self.first_rows if first and self.postgres and resource is not None and not deleted else None
        if companion is not None:
            params = {"res_type": rtype, "res_id": rid, "method": method, **values,
                      "rows": companion.rows(stored, resource)}  # type: ignore[arg-type]
            holding = held.holding(conn)
            if holding is not None:
                self._hold(holding, companion, stored, resource, params)  # type: ignore[arg-type]
            else:
                self._first(conn, companion, stored, resource, params)  # type: ignore[arg-type]
            return stored
        if held.holding(conn) is not None:  # (autocommit: it would not be part of anything)
            raise RuntimeError(f"only a new resource can be held, not {method} {rtype}/{rid}")
        if first and self.postgres:
            _PG_INSERT_BOTH.rows(conn, {"res_type": rtype, "res_id": rid, "method": method, **values})
        elif first:
            _INSERT_CURRENT.rows(conn, {"res_type": rtype, "res_id": rid, **values})
        else:
            res = conn.execute(update(R).where(R.c.res_type == rtype, R.c.res_id == rid,
                                               R.c.version == version - 1).values(**values))
            if res.rowcount != 1:  # someone else moved the version on: never fork the chain
                raise precondition_failed(f"{rtype}/{rid} was changed by another request; read it again")
        if not (first and self.postgres):
            _INSERT_VERSION.rows(conn, {"res_type": rtype, "res_id": rid, "version": version, "last_updated": lu,
                                        "method": method, "deleted": deleted,
                                        "content": content.decode() if content is not None else None,
                                        "patient_id": primary, "owners": own_text})
        for listener in self.listeners:
            listener(conn, stored, resource)
        return stored

    def _first(self, conn: Connection, companion: FirstVersionRows, stored: Stored, resource: dict[str, Any],
               params: dict[str, Any]) -> None:
        """(PostgreSQL) a new resource with its companion's rows, and the query's answer given to its listener."""
        query = self.first_query
        if self._insert_with is None or self._insert_with[0] is not query:
            self._insert_with = (query, _insert_with(companion, query))
        answer = self._insert_with[1].rows(conn, params)
        for listener in self.listeners:
            if query is not None and listener == query.listener:
                query.given(conn, stored, resource, answer)
            elif listener != companion.listener:
                listener(conn, stored, resource)

    def _hold(self, holding: held.Holding, companion: FirstVersionRows, stored: Stored, resource: dict[str, Any],
              params: dict[str, Any]) -> None:
        """(A `Database.single` unit) `_first`, held back for the audit row to join it (service/held.py)."""
        if not self.quiet(stored.res_type):
            raise RuntimeError(f"a new {stored.res_type} cannot be held: its listeners write too")
        if self._held_with is None or self._held_with[0] is not self.first_query:
            self._held_with = (self.first_query, _held_with(companion, self.first_query))
        ctes, tail = self._held_with[1]
        holding.hold(held.Held(ctes, tail, params, lambda conn: self._first(conn, companion, stored, resource, params)))

    def quiet(self, rtype: str) -> bool:
        """(PostgreSQL) whether a new resource of this type writes nothing beyond its record, its index rows and
        its subscriptions' deliveries (which its held statement checks for): then it can be held (service/held.py)."""
        if self.first_rows is None:
            return False
        for listener in self.listeners:
            acts_on = getattr(listener, "acts_on", None)  # (the types it writes for on its own; None: every type)
            if listener != self.first_rows.listener and (acts_on is None or rtype in acts_on):
                return False
        return True

    def _stamp(self, conn: Connection, resource: dict[str, Any], previous: Stored | None) -> None:
        for stamper in self.stampers:
            stamper(conn, resource, previous)

    def create(self, conn: Connection, resource: dict[str, Any], *, rid: str | None = None,
               owners: tuple[str, ...] | None = None) -> Stored:
        """`owners`: when the caller knows them (the audit's own events); else worked out (service.ownership)."""
        rtype = resource["resourceType"]
        fresh = rid is None  # a new UUID cannot clash: no savepoint needed to turn a clash into a 409
        rid = rid or new_id()
        self._stamp(conn, resource, None)
        lu = now_us()
        content = canonical(resource, rid, 1, lu)
        if fresh:
            return self._append(conn, rtype, rid, 1, lu, "POST", content, orjson.loads(content), first=True,
                                owners=owners)
        try:
            with conn.begin_nested():
                return self._append(conn, rtype, rid, 1, lu, "POST", content, orjson.loads(content), first=True,
                                    owners=owners)
        except IntegrityError:
            raise conflict(f"{rtype}/{rid} already exists") from None

    def update(self, conn: Connection, resource: dict[str, Any], rid: str, current: Stored | None, *,
               method: str = "PUT") -> tuple[Stored, bool]:
        """Write the next version after `current` (read with a lock by the caller; None: a new resource at
        this id). Returns (stored, created)."""
        rtype = resource["resourceType"]
        if current is None:
            self._stamp(conn, resource, None)
            lu = now_us()
            content = canonical(resource, rid, 1, lu)
            try:
                with conn.begin_nested():
                    return self._append(conn, rtype, rid, 1, lu, method, content, orjson.loads(content),
                                        first=True), True
            except IntegrityError:
                raise precondition_failed(f"{rtype}/{rid} was created by another request; read it again") from None
        self._stamp(conn, resource, None if current.deleted else current)
        version = current.version + 1
        lu = max(now_us(), current.last_updated + 1)
        content = canonical(resource, rid, version, lu)
        return self._append(conn, rtype, rid, version, lu, method, content, orjson.loads(content),
                            first=False), current.deleted

    def delete(self, conn: Connection, current: Stored) -> Stored:
        """Logical delete of `current` (read with a lock by the caller): a new version marked deleted."""
        lu = max(now_us(), current.last_updated + 1)
        return self._append(conn, current.res_type, current.res_id, current.version + 1, lu, "DELETE", None, None,
                            first=False, kept=current.content, owners=current.owners)

    # -- history ---------------------------------------------------------------------------------
    def history_statement(self, *, rtype: str | None = None, rid: str | None = None, since: int | None = None,
                          before: tuple[int, int] | None = None, at_or_before: int | None = None) -> Any:
        """Versions newest first (no limit). `before` is a keyset cursor (last_updated, seq) for paging."""
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
        return stmt.order_by(V.c.last_updated.desc(), V.c.seq.desc())

    def history(self, conn: Connection, *, rtype: str | None = None, rid: str | None = None,
                since: int | None = None, before: tuple[int, int] | None = None, count: int = 20,
                at_or_before: int | None = None) -> list[Stored]:
        stmt = self.history_statement(rtype=rtype, rid=rid, since=since, before=before, at_or_before=at_or_before)
        return [row_to_stored(r) for r in conn.execute(stmt.limit(count))]
