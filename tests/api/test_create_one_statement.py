"""A create and its audit row are written together or not at all: on PostgreSQL a plain create is sent with its
row as one statement (service/held.py), and whatever must go with them (a break-glass grant, a row naming
several patients, a subscription's delivery: tests/subscriptions/test_held_create.py) still goes in one
transaction with them. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select, text

from service.audit.tables import audit_also, audit_log
from service.policy.tables import break_glass
from service.storage.tables import resource
from tests.api.test_hot_path import OBSERVATION


def _rows(services: Any, stmt: Any) -> list[Any]:
    with services.db.read() as conn:
        return conn.execute(stmt).all()


def _created_rows(services: Any, target: str) -> list[Any]:
    return _rows(services, select(audit_log).where(audit_log.c.interaction == "create",
                                                   audit_log.c.target.like(f"{target}/_history/%")))


def _observations(services: Any) -> int:
    return _rows(services, select(func.count()).select_from(resource).where(resource.c.res_type == "Observation"))[0][0]


def test_a_create_is_stored_with_its_one_audit_row(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")
    r = client.post("/fhir/Observation", headers=nina, json=OBSERVATION)
    assert r.status_code == 201, r.text
    ref = f"Observation/{r.json()['id']}"
    assert client.get(f"/fhir/{ref}", headers=nina).json()["valueQuantity"]["value"] == 72.5
    assert client.get("/fhir/Observation", params={"subject": "Patient/pat-pat", "code:text": "Body weight"},
                      headers=nina).json()["total"] == 1  # (its index rows came with it)
    [row] = _created_rows(demo, ref)
    assert (row.status, row.patient_id, row.altid) == (201, "pat-pat", "nurse.nina")
    assert row.request_id == r.headers["x-request-id"]  # (one statement with it on PostgreSQL: test_hot_path.py)


@contextmanager
def _audit_refuses_created_rows(services: Any) -> Iterator[None]:
    """The database refuses the audit row of a successful create (as a full or broken audit table would)."""
    pg = services.db.is_postgres
    with services.db.write() as conn:
        if pg:
            conn.execute(text("CREATE FUNCTION test_refuse_201() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                              "IF NEW.status = 201 THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                              "RETURN NEW; END $$"))
            conn.execute(text("CREATE TRIGGER test_refuse_201 BEFORE INSERT ON audit_log FOR EACH ROW "
                              "EXECUTE FUNCTION test_refuse_201()"))
        else:
            conn.execute(text("CREATE TRIGGER test_refuse_201 BEFORE INSERT ON audit_log WHEN NEW.status = 201 "
                              "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
    try:
        yield
    finally:
        with services.db.write() as conn:
            conn.execute(text("DROP TRIGGER test_refuse_201" + (" ON audit_log" if pg else "")))
            if pg:
                conn.execute(text("DROP FUNCTION test_refuse_201()"))


def test_a_create_whose_audit_row_is_refused_is_not_stored(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")
    before = _observations(demo)
    with _audit_refuses_created_rows(demo):
        r = client.post("/fhir/Observation", headers=nina, json=OBSERVATION)
    assert r.status_code == 500, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert _observations(demo) == before  # nothing written without its audit row
    assert client.get("/fhir/Observation", params={"subject": "Patient/pat-pat", "code:text": "Body weight"},
                      headers=nina).json()["total"] == 0  # (nor its index rows)
    failed = _rows(demo, select(audit_log).where(audit_log.c.request_id == r.headers["x-request-id"]))
    assert [(f.interaction, f.status) for f in failed] == [("create", 500)]  # the failure is audited
    assert client.post("/fhir/Observation", headers=nina, json=OBSERVATION).status_code == 201


def test_a_create_under_break_glass_opens_its_grant_with_it(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    wes = auth_headers("ward.wes")
    assert client.post("/fhir/Observation", headers=wes, json=OBSERVATION).status_code == 403  # no relationship
    before = _observations(demo)
    r = client.post("/fhir/Observation", json=OBSERVATION, headers=auth_headers(
        "ward.wes", purpose="BTG", reason="Collapsed on the ward; recording observations"))
    assert r.status_code == 201, r.text
    assert _observations(demo) == before + 1
    [grant] = _rows(demo, select(break_glass).where(break_glass.c.subject == "ward.wes"))
    assert grant.patient_id == "pat-pat"
    [row] = _created_rows(demo, f"Observation/{r.json()['id']}")
    assert row.purpose == "BTG" and row.status == 201


def test_a_create_naming_two_people_points_to_both(demo, client):  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Observation", json={**OBSERVATION, "performer": [{"reference": "Patient/pat-paula"}]})
    assert r.status_code == 201, r.text
    [row] = _created_rows(demo, f"Observation/{r.json()['id']}")
    assert row.patient_id == "pat-pat"
    also = _rows(demo, select(audit_also.c.patient_id).where(audit_also.c.seq == row.seq))
    assert [a.patient_id for a in also] == ["pat-paula"]


@pytest.mark.parametrize("body, status", [({**OBSERVATION, "status": "not-a-status"}, 422),
                                          ({**OBSERVATION, "performer": [{"reference": "Practitioner/nobody"}]}, 422),
                                          ({**OBSERVATION, "subject": {"reference": "Patient/nobody"}}, 403)])
def test_a_refused_create_writes_only_its_audit_row(demo, client, auth_headers, body, status):  # type: ignore[no-untyped-def]
    before = _observations(demo)
    r = client.post("/fhir/Observation", headers=auth_headers("nurse.nina"), json=body)
    assert r.status_code == status, r.text
    assert _observations(demo) == before
    [row] = _rows(demo, select(audit_log).where(audit_log.c.request_id == r.headers["x-request-id"]))
    assert (row.interaction, row.status) == ("create", status)
