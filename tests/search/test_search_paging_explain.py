"""Paging under concurrent inserts (every resource that matched at the start, exactly once), and the
PostgreSQL plans of the common searches (index-backed, never a sequential scan)."""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from service.access.context import RequestContext
from service.fhir.request import FhirRequest
from service.repository import Repository


def _create(services, res):  # type: ignore[no-untyped-def]
    with services.db.write() as conn:
        return services.store.create(conn, res).res_id


def test_paging_under_concurrent_inserts_returns_each_match_once(client, clean_services):  # type: ignore[no-untyped-def]
    start = {_create(clean_services, {"resourceType": "Patient", "gender": "female",
                                      "name": [{"family": f"Conc{i:03d}"}]}) for i in range(40)}
    stop = threading.Event()
    added: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 200:
            added.append(_create(clean_services, {"resourceType": "Patient", "gender": "female",
                                                  "name": [{"family": f"Conc-new{i}"}]}))
            i += 1

    for sort in ("", "&_sort=-_lastUpdated", "&_sort=family"):
        t = threading.Thread(target=writer)
        stop.clear()
        t.start()
        try:
            seen: list[str] = []
            url = f"/fhir/Patient?gender=female&_count=7{sort}"
            while url:
                body = client.get(url).json()
                seen += [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
                url = next((lk["url"] for lk in body["link"] if lk["relation"] == "next"), "")
        finally:
            stop.set()
            t.join()
        assert len(seen) == len(set(seen)), f"duplicates with sort {sort!r}"
        assert start <= set(seen), f"missing {len(start - set(seen))} with sort {sort!r}"


def _explain(conn, statement, parameters):  # type: ignore[no-untyped-def]
    """EXPLAIN a statement as it was sent: the hot path's are in PostgreSQL's own form (`$1`, positional
    values), run on psycopg's RawCursor (service.db.run_on_cursor)."""
    if isinstance(parameters, tuple):
        from psycopg import RawCursor

        cur = RawCursor(conn.connection.dbapi_connection)
        cur.execute("EXPLAIN " + statement, parameters)
        return cur.fetchall()
    return list(conn.exec_driver_sql("EXPLAIN " + statement, parameters))


@pytest.fixture
def pg_session(services, backend):  # type: ignore[no-untyped-def]
    if backend != "postgresql":
        pytest.skip("PostgreSQL plans")
    # a write unit: a transaction, so the plans' SET LOCAL holds (reads run in autocommit on PostgreSQL, where it
    # would be ignored and the planner free to scan a small table)
    with services.db.write() as conn:
        yield Repository.internal(services, conn)


SEARCHES = [
    ("Patient", [("identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765919")]),
    ("Patient", [("name", "smi")]),
    ("Patient", [("birthdate", "ge1980-01-01")]),
    ("Patient", [("_lastUpdated", "gt2024-01-01")]),
    ("CarePlan", [("subject", "Patient/p1"), ("status", "active")]),
    ("Observation", [("subject", "Patient/p1"), ("date", "ge2024-01-01")]),
    ("CarePlan", [("subject:Patient.identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765919")]),
    ("CarePlan", [("status", "active")]),
    ("CarePlan", [("subject", "Patient/p1")]),
    ("Observation", [("date", "ge2024-01-01")]),
    ("Observation", [("date", "2024-05")]),
    ("Observation", [("_lastUpdated", "ge2024-01-01"), ("_sort", "_lastUpdated")]),
    ("Patient", [("family", "smi"), ("_sort", "family")]),
    ("Patient", [("identifier", "9434765919")]),
    ("Patient", [("_id", "p1")]),
]


@pytest.mark.parametrize("rtype,params", SEARCHES, ids=[f"{t}?{'&'.join(k for k, _ in p)}" for t, p in SEARCHES])
def test_common_searches_use_indexes_on_postgresql(pg_session, rtype, params):  # type: ignore[no-untyped-def]
    from service.search.run import plan_statements

    engine = pg_session.services.search
    req = FhirRequest("GET", rtype, params=list(params))
    conn = pg_session._conn
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    for stmt in plan_statements(engine, req, pg_session, rtype):
        sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
        assert "Seq Scan" not in plan, plan
        assert "Index" in plan, plan


@pytest.fixture
def sqlite_session(services, backend):  # type: ignore[no-untyped-def]
    if backend != "sqlite":
        pytest.skip("SQLite plans")
    # a write unit: a transaction, so the plans' SET LOCAL holds (reads run in autocommit on PostgreSQL, where it
    # would be ignored and the planner free to scan a small table)
    with services.db.write() as conn:
        yield Repository.internal(services, conn)


@pytest.mark.parametrize("rtype,params", SEARCHES, ids=[f"{t}?{'&'.join(k for k, _ in p)}" for t, p in SEARCHES])
def test_common_searches_use_indexes_on_sqlite(sqlite_session, rtype, params):  # type: ignore[no-untyped-def]
    """SQLite's EXPLAIN QUERY PLAN: every table is reached by SEARCH (an index), never a full SCAN."""
    from sqlalchemy.dialects import sqlite

    from service.search.run import plan_statements

    engine = sqlite_session.services.search
    req = FhirRequest("GET", rtype, params=list(params))
    for stmt in plan_statements(engine, req, sqlite_session, rtype):
        sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        plan = [str(r[-1]) for r in sqlite_session._conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        assert not [line for line in plan if line.startswith("SCAN ")], plan
        assert any("USING" in line and "INDEX" in line for line in plan), plan
        # one criterion drives; the others are probes per candidate, never a materialised list of every
        # Observation dated after 2018 (or every active CarePlan)
        searched = [k for k, _ in params if not k.startswith("_") and "." not in k]
        if len(searched) > 1:
            assert sum("LIST SUBQUERY" in line for line in plan) == 1, plan
            assert any("CORRELATED" in line for line in plan), plan


def test_cursor_query_parameters_are_canonical(client):  # type: ignore[no-untyped-def]
    for i in range(3):
        client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    body = client.get("/fhir/Patient?gender=male&_count=1").json()
    nxt = next(lk["url"] for lk in body["link"] if lk["relation"] == "next")
    params = dict(parse_qsl(nxt.split("?", 1)[1]))
    assert params["gender"] == "male" and params["_count"] == "1" and params["_cursor"]


@pytest.mark.parametrize("path", ["Patient/{pid}/$everything", "Patient/{pid}/Observation", "Patient/{pid}/*"])
def test_compartment_pages_are_driven_by_the_patient_index(clean_services, backend, path):  # type: ignore[no-untyped-def]
    """$everything and compartment searches read the patient's compartment rows through its index
    (patient_id, res_type, res_id), never every resource of the compartment's types."""
    from sqlalchemy import event

    from service.api.pipeline import handle

    services = clean_services
    with services.db.write() as conn:  # other patients' data, so that the planner chooses by selectivity
        for i in range(150):
            other = services.store.create(conn, {"resourceType": "Patient"}).res_id
            services.store.create(conn, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                         "subject": {"reference": f"Patient/{other}"}})
        conn.exec_driver_sql("ANALYZE")
    pid = _create(services, {"resourceType": "Patient", "gender": "female"})
    for i in range(3):
        _create(services, {"resourceType": "Observation", "status": "final", "code": {"text": f"o{i}"},
                           "subject": {"reference": f"Patient/{pid}"}})
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "own_compartment" in statement and statement.lstrip().startswith("SELECT"):
            seen.append((statement, parameters))

    for engine in services.db.engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        r = handle(FhirRequest("GET", path.format(pid=pid), params=[("_count", "2")]), services,
                   RequestContext.system())
    finally:
        for engine in services.db.engines:
            event.remove(engine, "before_cursor_execute", record)
    assert r.status == 200, r.body
    assert len(seen) == 2  # the count and the page
    with services.db.read() as conn:
        for statement, parameters in seen:
            if backend == "postgresql":
                # (reads run in autocommit, where SET LOCAL does nothing: set it for the session, then reset)
                conn.exec_driver_sql("SET enable_seqscan = off")
                try:
                    plan = "\n".join(r[0] for r in _explain(conn, statement, parameters))
                finally:
                    conn.exec_driver_sql("RESET enable_seqscan")
                assert "ix_sp_compartment_patient" in plan and "Seq Scan" not in plan, plan
            else:
                plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                          parameters))
                assert "SEARCH own_compartment USING COVERING INDEX ix_sp_compartment_patient" in plan, plan
                assert "SCAN " not in plan, plan
