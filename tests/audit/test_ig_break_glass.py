"""The IG lead's break-glass review queue: $break-glass-queue (list) and $break-glass-review (review, close)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from service.api.pipeline import handle
from service.clock import now_us
from service.fhir.request import FhirRequest
from service.policy import break_glass as bg
from tests.audit.ig_support import (
    IG_OPERATIONS,
    ig_context,
    issue_expression,
    load_demo,
    open_grant,
    parameters,
    review_body,
)

QUEUE = "/fhir/$break-glass-queue"
REVIEW = "/fhir/$break-glass-review"


@pytest.fixture
def grants(clean_services):  # type: ignore[no-untyped-def]
    """Two pending grants: ward.wes for pat-pat (older), then gp.gary for pat-paula (newer)."""
    load_demo(clean_services)
    wes = open_grant(clean_services, "ward.wes", "pat-pat", "Unconscious in A&E, no care team reachable")
    time.sleep(0.002)
    gary = open_grant(clean_services, "gp.gary", "pat-paula", "Out-of-hours call, record needed now")
    return {"wes": wes, "gary": gary}


@pytest.fixture
def iris(auth_headers):  # type: ignore[no-untyped-def]
    return auth_headers("ig.iris")


def _queue(client, headers, query: str = "") -> dict:  # type: ignore[no-untyped-def]
    r = client.get(QUEUE + query, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_ig_lead_lists_pending_grants_newest_first_with_names(client, grants, iris):
    body = _queue(client, iris)
    assert parameters(body, "status") == ["pending"]
    assert parameters(body, "total") == [2] and parameters(body, "count") == [2]
    listed = parameters(body, "grant")
    assert [g["id"] for g in listed] == [grants["gary"].id, grants["wes"].id]
    wes = listed[1]
    assert wes["patient"] == {"reference": "Patient/pat-pat"}
    assert wes["who"] == {"user": "ward.wes", "name": "Wes Ward",
                          "reference": {"reference": "Practitioner/prac-wes", "display": "Wes Ward"}}
    assert wes["organisation"]["name"] == "Westshire Hospitals NHS Foundation Trust"
    assert wes["organisation"]["odsCode"] == {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                              "value": "RBZ"}
    assert wes["organisation"]["reference"]["reference"] == "Organization/org-acute-trust"
    assert wes["role"]["code"] == "R8001" and wes["role"]["display"] == "Nurse"
    assert wes["reason"] == "Unconscious in A&E, no care team reachable"
    assert wes["status"] == "pending" and wes["accesses"] == 1 and wes["open"] is True
    assert wes["opened"] < wes["expires"]
    for absent in ("outcome", "reviewer", "reviewed", "note"):
        assert absent not in wes
    assert wes["auditEvents"].startswith("AuditEvent?purpose=BTG&patient=Patient%2Fpat-pat&altid=ward.wes&date=ge")
    assert listed[0]["who"]["name"] == "Gary Practitioner"


def test_queue_filters_by_status_and_patient_and_pages(client, grants, iris):
    assert parameters(_queue(client, iris, "?status=reviewed"), "grant") == []
    assert parameters(_queue(client, iris, "?status=reviewed"), "total") == [0]
    assert [g["id"] for g in parameters(_queue(client, iris, "?status=all&patient=pat-pat"), "grant")] == \
        [grants["wes"].id]
    assert [g["id"] for g in parameters(_queue(client, iris, "?patient=Patient/pat-paula"), "grant")] == \
        [grants["gary"].id]
    first = _queue(client, iris, "?_count=1")
    assert parameters(first, "total") == [2] and parameters(first, "count") == [1]
    newest = parameters(first, "grant")[0]
    older = _queue(client, iris, "?_count=1&before=" + newest["opened"].replace("+", "%2B"))
    assert [g["id"] for g in parameters(older, "grant")] == [grants["wes"].id]


@pytest.mark.parametrize("query,param", [("?status=open", "status"), ("?_count=lots", "_count"),
                                         ("?_count=0", "_count"), ("?patient=Patient/a%20b", "patient"),
                                         ("?before=yesterday", "before")])
def test_queue_rejects_bad_parameters_naming_them(client, grants, iris, query, param):
    r = client.get(QUEUE + query, headers=iris)
    assert r.status_code == 400, r.text
    assert f"'{param}'" in r.json()["issue"][0]["diagnostics"]


def test_review_records_the_outcome_and_closes_the_grant(client, services, grants, iris):
    gid = grants["wes"].id
    r = client.post(REVIEW, headers=iris, json=review_body(grant=gid, outcome="inappropriate",
                                                           note="No emergency recorded; referred to line manager"))
    assert r.status_code == 200, r.text
    [grant] = parameters(r.json(), "grant")
    assert grant["id"] == gid and grant["status"] == "reviewed" and grant["outcome"] == "inappropriate"
    assert grant["reviewer"] == "ig.iris" and grant["note"] == "No emergency recorded; referred to line manager"
    assert grant["open"] is False and grant["reviewed"] >= grant["opened"]
    with services.db.read() as conn:
        stored = bg.get(conn, gid)
        assert stored is not None and stored.expires_us <= now_us()
        assert bg.active_grant(conn, "ward.wes", "pat-pat") is None  # no further access under it
    assert [g["id"] for g in parameters(_queue(client, iris), "grant")] == [grants["gary"].id]
    reviewed = parameters(_queue(client, iris, "?status=reviewed"), "grant")
    assert [g["id"] for g in reviewed] == [gid] and reviewed[0]["outcome"] == "inappropriate"
    # the review is itself in the audit trail, with what was decided
    found = client.get("/fhir/AuditEvent?altid=ig.iris&subtype=break-glass-review").json()
    notes = [d["valueString"] for e in found.get("entry", []) for ent in e["resource"]["entity"]
             for d in ent.get("detail", []) if d["type"] == "policy"]
    assert notes == [f"break-glass review: grant {gid} for Patient/pat-pat by ward.wes: inappropriate (closed)"]


def test_review_may_leave_the_grant_open(client, services, grants, iris):
    gid = grants["gary"].id
    r = client.post(REVIEW, headers=iris, json=review_body(grant=gid, outcome="appropriate", close=False))
    assert r.status_code == 200, r.text
    [grant] = parameters(r.json(), "grant")
    assert grant["outcome"] == "appropriate" and grant["open"] is True and "note" not in grant
    with services.db.read() as conn:
        assert bg.active_grant(conn, "gp.gary", "pat-paula") is not None


def test_review_of_a_reviewed_grant_is_a_conflict_and_changes_nothing(client, services, grants, iris):
    gid = grants["wes"].id
    assert client.post(REVIEW, headers=iris, json=review_body(grant=gid, outcome="appropriate")).status_code == 200
    r = client.post(REVIEW, headers=iris, json=review_body(grant=gid, outcome="inappropriate", note="second look"))
    assert r.status_code == 409, r.text
    assert "already been reviewed" in r.json()["issue"][0]["diagnostics"]
    with services.db.read() as conn:
        stored = bg.get(conn, gid)
    assert stored is not None and stored.outcome == "appropriate" and stored.note is None


def test_review_of_an_unknown_grant_is_not_found(client, grants, iris):
    r = client.post(REVIEW, headers=iris, json=review_body(grant="no-such-grant", outcome="appropriate"))
    assert r.status_code == 404, r.text
    assert "no-such-grant" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("values,status,param", [
    ({"outcome": "appropriate"}, 400, "grant"),
    ({"grant": "GID"}, 400, "outcome"),
    ({"grant": "GID", "outcome": "fine"}, 400, "outcome"),
    ({"grant": "GID", "outcome": "inappropriate"}, 422, "note"),
    ({"grant": "GID", "outcome": "appropriate", "close": "maybe"}, 400, "close"),
])
def test_review_rejects_bad_input_naming_the_parameter(client, services, grants, iris, values, status, param):
    gid = grants["wes"].id
    values = {k: (gid if v == "GID" else v) for k, v in values.items()}
    body = review_body(**values)
    if param == "close":
        body["parameter"][-1] = {"name": "close", "valueString": "maybe"}
    r = client.post(REVIEW, headers=iris, json=body)
    assert r.status_code == status, r.text
    assert f"'{param}'" in r.json()["issue"][0]["diagnostics"]
    if param in ("grant", "note", "close"):
        assert issue_expression(r) == [f"Parameters.parameter.where(name='{param}')"]
    with services.db.read() as conn:
        assert bg.get(conn, gid).status == "pending"  # type: ignore[union-attr]


def test_review_rejects_a_body_that_is_not_parameters(client, grants, iris):
    r = client.post(REVIEW, headers=iris, json={"resourceType": "Patient"})
    assert r.status_code == 400, r.text
    r = client.post(REVIEW, headers={**iris, "Content-Type": "application/fhir+json"}, content=b"{not json")
    assert r.status_code == 400, r.text


def test_nobody_reviews_their_own_break_glass(client, services, grants, auth_headers):
    own = open_grant(services, "admin.ada", "pat-pat", "Data repair for a reported safety incident")
    r = client.post(REVIEW, headers=auth_headers("admin.ada"), json=review_body(grant=own.id, outcome="appropriate"))
    assert r.status_code == 403, r.text
    # an administrator may review someone else's
    r = client.post(REVIEW, headers=auth_headers("admin.ada"),
                    json=review_body(grant=grants["wes"].id, outcome="appropriate"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("who", [{"user": "nurse.nina"}, {"user": "patient.pat"}, {"client": "gp-system"},
                                 {"user": "ward.wes"}])
@pytest.mark.parametrize("method,op", IG_OPERATIONS)
def test_only_the_ig_lead_and_administrators_may_use_the_ig_tools(client, services, grants, auth_headers, who,
                                                                   method, op):
    headers = auth_headers(who.get("user"), client=who.get("client"))
    if method == "GET":
        r = client.get(f"/fhir/{op}", headers=headers)
    else:
        r = client.post(f"/fhir/{op}", headers=headers, json=review_body(grant=grants["wes"].id, outcome="appropriate"))
    assert r.status_code == 403, r.text
    assert "information-governance lead and administrators" in r.json()["issue"][0]["diagnostics"]
    with services.db.read() as conn:
        assert bg.get(conn, grants["wes"].id).status == "pending"  # type: ignore[union-attr]


@pytest.mark.parametrize("method,op", IG_OPERATIONS)
def test_ig_lead_and_administrator_may_use_every_ig_tool(client, grants, auth_headers, method, op):
    for user in ("ig.iris", "admin.ada"):
        if method == "GET":
            r = client.get(f"/fhir/{op}", headers=auth_headers(user))
        else:
            gid = grants["wes" if user == "ig.iris" else "gary"].id
            r = client.post(f"/fhir/{op}", headers=auth_headers(user), json=review_body(grant=gid, outcome="appropriate"))
        assert r.status_code == 200, (user, r.text)
        assert r.json()["resourceType"] == "Parameters"


def test_ig_tools_need_a_token(anon_client):
    for method, op in IG_OPERATIONS:
        assert anon_client.request(method, f"/fhir/{op}").status_code == 401


def test_concurrent_reviews_of_one_grant_give_one_success_and_conflicts(services, grants):
    gid = grants["wes"].id

    def review(i: int) -> int:
        body = orjson.dumps(review_body(grant=gid, outcome="appropriate", note=f"reviewer {i}"))
        req = FhirRequest(method="POST", path="$break-glass-review", body=body, content_type="application/fhir+json")
        return handle(req, services, ig_context()).status

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(review, range(4)))
    assert statuses == [200, 409, 409, 409]
    with services.db.read() as conn:
        assert bg.get(conn, gid).status == "reviewed"  # type: ignore[union-attr]


def test_the_ig_operations_are_in_the_capability_statement(client):
    ops = {o["name"] for o in client.get("/fhir/metadata").json()["rest"][0]["operation"]}
    assert {"break-glass-queue", "break-glass-review", "objections-report", "denials-report",
            "access-report"} <= ops
