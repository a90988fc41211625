"""The versioned store directly (no HTTP): versions, compare-and-set, logical delete, history order and paging."""

from __future__ import annotations

import pytest

from service.fhir.outcome import OperationOutcomeError


def pat(**extra):  # type: ignore[no-untyped-def]
    return {"resourceType": "Patient", "gender": "female", **extra}


def test_create_read_update_vread_delete(clean_services):
    store, db = clean_services.store, clean_services.db
    with db.write() as conn:
        s1 = store.create(conn, pat())
        assert s1.version == 1 and s1.json()["meta"]["versionId"] == "1" and s1.json()["id"] == s1.res_id
        s2, created = store.update(conn, pat(gender="male"), s1.res_id, s1)
        assert not created and s2.version == 2 and s2.last_updated > s1.last_updated
    with db.read() as conn:
        assert store.current(conn, "Patient", s1.res_id).json()["gender"] == "male"
        assert store.version(conn, "Patient", s1.res_id, 1).json()["gender"] == "female"
        assert store.current(conn, "Patient", s1.res_id).content == s2.content  # stored bytes are served
    with db.write() as conn:
        d = store.delete(conn, store.current(conn, "Patient", s1.res_id, lock=True))
        assert d.version == 3 and d.deleted and d.content is None
    with db.read() as conn:
        kept = store.current(conn, "Patient", s1.res_id)
        assert kept.deleted and kept.json()["gender"] == "male"  # the current row keeps what was deleted
        gone = store.version(conn, "Patient", s1.res_id, 3)
        assert gone.deleted and gone.content is None
        assert store.current(conn, "Patient", "nope") is None


def test_compare_and_set_refuses_a_stale_version_and_rolls_back(clean_services):
    store, db = clean_services.store, clean_services.db
    with db.write() as conn:
        first = store.create(conn, pat())
        store.update(conn, pat(gender="male"), first.res_id, first)
    with pytest.raises(OperationOutcomeError) as err, db.write() as conn:
        store.update(conn, pat(gender="other"), first.res_id, first)  # written against version 1: stale
    assert err.value.status == 412
    with db.read() as conn:
        assert [s.version for s in store.history(conn, rtype="Patient", rid=first.res_id)] == [2, 1]


def test_update_as_create_and_recreate_after_delete(clean_services):
    store, db = clean_services.store, clean_services.db
    with db.write() as conn:
        s, created = store.update(conn, pat(), "client-id", None)
        assert created and s.version == 1
        deleted = store.delete(conn, s)
        again, recreated = store.update(conn, pat(), "client-id", store.current(conn, "Patient", "client-id"))
        assert deleted.version == 2 and recreated and again.version == 3


def test_every_version_carries_its_owners(clean_services):
    """The store keeps service.ownership's answer with every version: a Provenance belongs to its target's
    patient, found in the record at write time."""
    store, db = clean_services.store, clean_services.db
    with db.write() as conn:
        p = store.create(conn, pat())
        obs = store.create(conn, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                  "subject": {"reference": f"Patient/{p.res_id}"}})
        prov = store.create(conn, {"resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
                                   "target": [{"reference": f"Observation/{obs.res_id}/_history/1"}],
                                   "agent": [{"who": {"display": "x"}}]})
        org = store.create(conn, {"resourceType": "Organization", "name": "x"})
    assert p.owners == (p.res_id,) and obs.owners == (p.res_id,) and prov.owners == (p.res_id,)
    assert org.owners == ()
    with db.read() as conn:
        assert store.current(conn, "Provenance", prov.res_id).owners == (p.res_id,)
        assert store.version(conn, "Observation", obs.res_id, 1).owners == (p.res_id,)


def test_history_is_newest_first_and_pages_by_keyset(clean_services):
    store, db = clean_services.store, clean_services.db
    with db.write() as conn:
        made = [store.create(conn, pat()) for _ in range(5)]
        store.update(conn, pat(gender="male"), made[0].res_id, made[0])
    ids = [m.res_id for m in made]
    with db.read() as conn:
        everything = store.history(conn, count=100)
        assert [(s.res_id, s.version) for s in everything][:2] == [(ids[0], 2), (ids[4], 1)]
        keys = [(s.last_updated, s.seq) for s in everything]
        assert keys == sorted(keys, reverse=True)
        page1 = store.history(conn, count=3)
        page2 = store.history(conn, count=3, before=(page1[-1].last_updated, page1[-1].seq))
        assert [s.seq for s in page1 + page2] == [s.seq for s in everything]
        since = store.history(conn, since=everything[1].last_updated, count=100)
        assert len(since) == 2


def test_a_read_is_one_indexed_lookup(clean_services):
    """The store's read is a single statement, answered through the primary key (both databases)."""
    from sqlalchemy import event

    store, db = clean_services.store, clean_services.db
    with db.write() as conn:
        rid = store.create(conn, pat()).res_id
        for _ in range(300):  # enough rows of the type for the planner to choose by selectivity
            store.create(conn, pat())
    seen: list[tuple[str, object]] = []
    with db.read() as conn:
        def record(conn_, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            seen.append((statement, parameters))

        event.listen(conn, "before_cursor_execute", record)
        try:
            assert store.current(conn, "Patient", rid).res_id == rid
        finally:
            event.remove(conn, "before_cursor_execute", record)
        assert len(seen) == 1, seen
        statement, parameters = seen[0]
        if db.is_postgres:
            conn.exec_driver_sql("ANALYZE resource")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: is the index usable?
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "Index Scan using resource_pkey" in plan, plan
            assert "Filter" not in plan, plan  # both key columns are in the index condition
        else:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            assert "USING INDEX" in plan and "res_type=? AND res_id=?" in plan, plan
