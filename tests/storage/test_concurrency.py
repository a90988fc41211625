"""Concurrent updates are serialised by the database: no lost update, never a forked version chain.

Each thread runs the real pipeline on its own pooled connection (no TestClient in between), so the
requests really overlap in the database. Runs on PostgreSQL (row locks) and SQLite (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from service.api.pipeline import handle
from service.fhir.request import FhirRequest

THREADS = 20
_AUTH: dict[str, str] = {}  # admin.ada's bearer token for this test's services


@pytest.fixture(autouse=True)
def _admin_token(clean_services):  # type: ignore[no-untyped-def]
    from tests.conftest import make_auth_headers

    _AUTH.clear()
    _AUTH.update({k.lower(): v for k, v in make_auth_headers(clean_services).items()})


def _req(method: str, path: str, body: Any = None, **headers: str) -> FhirRequest:
    return FhirRequest(method=method, path=path, headers={**_AUTH, **{k.lower(): v for k, v in headers.items()}},
                       body=orjson.dumps(body) if body is not None else None,
                       content_type="application/fhir+json" if body is not None else None)


def _patient(rid: str, n: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": "Race", "given": [f"writer-{n}"]}]}


def _parallel(services: Any, requests: list[FhirRequest]) -> list[Any]:
    barrier = threading.Barrier(len(requests))

    def go(r: FhirRequest) -> Any:
        barrier.wait()
        return handle(r, services)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(go, requests))


def _versions(services: Any, rid: str) -> list[dict[str, Any]]:
    r = handle(FhirRequest(method="GET", path=f"Patient/{rid}/_history", params=[("_count", "1000")],
                           headers=dict(_AUTH)), services)
    assert r.status == 200
    return orjson.loads(r.body).get("entry", [])


def test_same_if_match_from_many_threads_exactly_one_wins(clean_services):
    services = clean_services
    assert handle(_req("PUT", "Patient/race-1", _patient("race-1", 0)), services).status == 201
    results = _parallel(services, [_req("PUT", "Patient/race-1", _patient("race-1", n), **{"If-Match": 'W/"1"'})
                                   for n in range(1, THREADS + 1)])
    statuses = sorted(r.status for r in results)
    assert statuses == [200] + [412] * (THREADS - 1), statuses
    for r in results:
        if r.status == 412:
            issue = orjson.loads(r.body)["issue"][0]
            assert issue["diagnostics"] and r.body.startswith(b'{"resourceType":"OperationOutcome"')
    winner = next(r for r in results if r.status == 200)
    entries = _versions(services, "race-1")
    assert [e["response"]["etag"] for e in entries] == ['W/"2"', 'W/"1"']
    assert entries[0]["resource"] == orjson.loads(winner.body)


def test_parallel_updates_without_if_match_lose_nothing(clean_services):
    services = clean_services
    assert handle(_req("PUT", "Patient/race-2", _patient("race-2", 0)), services).status == 201
    results = _parallel(services, [_req("PUT", "Patient/race-2", _patient("race-2", n))
                                   for n in range(1, THREADS + 1)])
    assert [r.status for r in results] == [200] * THREADS, [r.body for r in results if r.status != 200]
    got_versions = sorted(int(orjson.loads(r.body)["meta"]["versionId"]) for r in results)
    assert got_versions == list(range(2, THREADS + 2))  # each update got its own version
    entries = _versions(services, "race-2")
    assert [int(e["resource"]["meta"]["versionId"]) for e in entries] == list(range(THREADS + 1, 0, -1))
    writers = sorted(e["resource"]["name"][0]["given"][0] for e in entries)
    assert writers == sorted(f"writer-{n}" for n in range(THREADS + 1))  # every write is in the chain


def test_parallel_update_as_create_of_one_new_id_creates_it_once(clean_services):
    services = clean_services
    results = _parallel(services, [_req("PUT", "Patient/race-3", _patient("race-3", n)) for n in range(THREADS)])
    statuses = [r.status for r in results]
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 412}, statuses
    entries = _versions(services, "race-3")
    assert [int(e["resource"]["meta"]["versionId"]) for e in entries] == list(
        range(len(entries), 0, -1))
    assert len(entries) == statuses.count(200) + 1


def _patch(rid: str, ops: list[dict[str, Any]], **headers: str) -> FhirRequest:
    r = _req("PATCH", f"Patient/{rid}", **headers)
    r.body, r.content_type = orjson.dumps(ops), "application/json-patch+json"
    return r


def test_parallel_patches_with_the_same_if_match_exactly_one_wins(clean_services):
    services = clean_services
    assert handle(_req("PUT", "Patient/race-4", _patient("race-4", 0)), services).status == 201
    results = _parallel(services, [_patch("race-4", [{"op": "replace", "path": "/name/0/given/0", "value": f"p{n}"}],
                                          **{"If-Match": 'W/"1"'}) for n in range(THREADS)])
    statuses = sorted(r.status for r in results)
    assert statuses == [200] + [412] * (THREADS - 1), statuses
    assert [e["response"]["etag"] for e in _versions(services, "race-4")] == ['W/"2"', 'W/"1"']


def test_parallel_patches_without_if_match_never_lose_an_update(clean_services):
    """A patch applies to the version it read; if another write got in first it is refused (412), never
    applied on top of a version it did not see, and never silently dropped."""
    services = clean_services
    assert handle(_req("PUT", "Patient/race-5", _patient("race-5", 0)), services).status == 201
    results = _parallel(services, [_patch("race-5", [{"op": "add", "path": "/name/0/given/-", "value": f"p{n}"}])
                                   for n in range(THREADS)])
    statuses = [r.status for r in results]
    assert set(statuses) <= {200, 412} and 200 in statuses, statuses
    winners = sorted(orjson.loads(r.body)["name"][0]["given"][-1] for r in results if r.status == 200)
    entries = _versions(services, "race-5")
    assert len(entries) == len(winners) + 1
    assert [int(e["resource"]["meta"]["versionId"]) for e in entries] == list(range(len(entries), 0, -1))
    final = entries[0]["resource"]["name"][0]["given"]
    assert final[0] == "writer-0" and sorted(final[1:]) == winners  # every successful patch is in the record
