"""Rebuilding what is derived from the stored resources: every index row and every current resource's owners
(`sharedcare search reindex`), in batches, each in its own transaction."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int], None]  # (the type being done, resources just done): `sharedcare search reindex`'s bar


def reindex_all(db, base: str, rtype: str | None = None, batch: int = 500,  # type: ignore[no-untyped-def]
                progress: Progress | None = None) -> int:
    """Rebuild every index row and every current resource's owners (service.ownership), type by type; the types
    whose owners come from what they refer to (Provenance, AuditEvent) last, once their targets are done."""
    from service.fhir.types import RESOURCE_TYPES
    from service.ownership import THROUGH

    types = [rtype] if rtype is not None else sorted(RESOURCE_TYPES - set(THROUGH)) + sorted(THROUGH)
    return sum(_reindex_type(db, base, t, batch, progress) for t in types)


def count(db, rtype: str | None = None) -> int:  # type: ignore[no-untyped-def]
    """How many stored resources (current versions, deleted ones too) a reindex goes through."""
    from sqlalchemy import func, select

    from service.storage.tables import resource as R

    stmt = select(func.count()).select_from(R)
    if rtype is not None:
        stmt = stmt.where(R.c.res_type == rtype)
    with db.read() as conn:
        return int(conn.execute(stmt).scalar_one())


def _reindex_type(db, base: str, rtype: str, batch: int,  # type: ignore[no-untyped-def]
                  progress: Progress | None = None) -> int:
    import orjson
    from sqlalchemy import select, update

    from service import ownership
    from service.search import indexer
    from service.storage.store import Store
    from service.storage.tables import resource as R

    done = 0
    last: str | None = None
    from service.search.engine import SearchEngine

    store = Store(postgres=db.is_postgres, identified=SearchEngine.patients_identified)
    while True:
        with db.write() as conn:
            stmt = select(R.c.res_type, R.c.res_id, R.c.deleted, R.c.content).where(R.c.res_type == rtype)
            if last is not None:
                stmt = stmt.where(R.c.res_id > last)
            rows = list(conn.execute(stmt.order_by(R.c.res_id).limit(batch)))
            if not rows:
                return done
            indexer.clear(conn, [(r.res_type, r.res_id) for r in rows])
            pending: dict = {}
            resolve = store.resolver(conn)
            for r in rows:
                if r.content is None:
                    continue
                resource = orjson.loads(r.content)
                owners = ownership.owners(r.res_type, resource, resolve)
                conn.execute(update(R).where(R.c.res_type == r.res_type, R.c.res_id == r.res_id).values(
                    owners=ownership.owners_text(owners), patient_id=owners[0] if owners else None))
                if not r.deleted:
                    indexer.merge(pending, indexer.index_rows(r.res_type, r.res_id, resource, base, owners))
            indexer.insert_rows(conn, pending)
            done += len(rows)
            last = rows[-1].res_id
        if progress is not None:
            progress(rtype, len(rows))
