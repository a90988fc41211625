"""SMART scopes enforced over HTTP: v2 permissions per interaction (c r u d s), v1 equivalents (.read, .write, .*),
per-type scopes, `?param=value` restrictions on reads, searches and writes, and patient/ scopes on data that
belongs to no patient. Identities: the administrator (whose care relationships do not matter) with narrowed
scopes, and patient.pat. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _obs(category: str, patient: str = "pat-pat") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"text": f"{category} result"}, "subject": {"reference": f"Patient/{patient}"}}


@pytest.fixture
def observations(demo, client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    ids = {}
    for cat in ("laboratory", "vital-signs"):
        r = client.post("/fhir/Observation", json=_obs(cat))
        assert r.status_code == 201
        ids[cat] = r.json()["id"]
    return ids


def _ids(r: Any) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])
            if e["resource"]["resourceType"] != "OperationOutcome"}


@pytest.mark.parametrize("scope,allowed", [
    ("user/Observation.r", {"read"}),
    ("user/Observation.s", {"search"}),
    ("user/Observation.rs", {"read", "search"}),
    ("user/Observation.c", {"create"}),
    ("user/Observation.ru", {"read", "update"}),
    ("user/Observation.rd", {"read", "delete"}),
    ("user/Observation.read", {"read", "search"}),
    ("user/Observation.read user/Observation.write", {"read", "search", "create", "update", "delete"}),
    ("user/Observation.*", {"read", "search", "create", "update", "delete"}),
    ("user/*.cruds", {"read", "search", "create", "update", "delete"}),
    ("user/Patient.cruds", set()),
    ("system/Observation.rs", {"read", "search"}),
])
def test_each_interaction_needs_its_permission(observations, anon_client, auth_headers, scope, allowed):
    h = auth_headers("admin.ada", scope=scope)
    lab = observations["laboratory"]
    got = {
        "read": anon_client.get(f"/fhir/Observation/{lab}", headers=h).status_code,
        "search": anon_client.get("/fhir/Observation", headers=h).status_code,
        "create": anon_client.post("/fhir/Observation", json=_obs("laboratory"), headers=h).status_code,
        "update": anon_client.put(f"/fhir/Observation/{lab}", json={**_obs("laboratory"), "id": lab,
                                                                    "status": "amended"}, headers=h).status_code,
    }
    got["delete"] = anon_client.delete(f"/fhir/Observation/{observations['vital-signs']}", headers=h).status_code
    for interaction, status in got.items():
        if interaction in allowed:
            assert status in (200, 201, 204), (scope, interaction, status)
        else:
            assert status == 403, (scope, interaction, status)


def test_vread_and_instance_history_need_r_type_history_needs_s(observations, anon_client, auth_headers):
    lab = observations["laboratory"]
    r_only = auth_headers("admin.ada", scope="user/Observation.r")
    s_only = auth_headers("admin.ada", scope="user/Observation.s")
    assert anon_client.get(f"/fhir/Observation/{lab}/_history/1", headers=r_only).status_code == 200
    assert anon_client.get(f"/fhir/Observation/{lab}/_history", headers=r_only).status_code == 200
    assert anon_client.get("/fhir/Observation/_history", headers=r_only).status_code == 403
    assert anon_client.get("/fhir/Observation/_history", headers=s_only).status_code == 200
    assert anon_client.get(f"/fhir/Observation/{lab}/_history/1", headers=s_only).status_code == 403


def test_restricted_scopes_limit_reads_and_searches(observations, anon_client, auth_headers):
    h = auth_headers("admin.ada", scope=f"user/Observation.rs?category={CATEGORY}|laboratory")
    assert anon_client.get(f"/fhir/Observation/{observations['laboratory']}", headers=h).status_code == 200
    assert anon_client.get(f"/fhir/Observation/{observations['vital-signs']}", headers=h).status_code in (403, 404)
    r = anon_client.get("/fhir/Observation", headers=h)
    assert _ids(r) == {observations["laboratory"]}
    assert r.json().get("total") in (None, 1)  # never a count that includes what was hidden


def test_restricted_scopes_limit_writes(observations, anon_client, auth_headers, client):
    h = auth_headers("admin.ada", scope="user/Observation.cru?category=laboratory")
    assert anon_client.post("/fhir/Observation", json=_obs("laboratory"), headers=h).status_code == 201
    assert anon_client.post("/fhir/Observation", json=_obs("vital-signs"), headers=h).status_code == 403
    # Re-labelling a laboratory result as vital signs would take it outside the scope: refused.
    lab = observations["laboratory"]
    r = anon_client.put(f"/fhir/Observation/{lab}", json={**_obs("vital-signs"), "id": lab}, headers=h)
    assert r.status_code == 403
    assert client.get(f"/fhir/Observation/{lab}").json()["category"][0]["coding"][0]["code"] == "laboratory"


def test_patient_scopes_on_data_of_no_patient(observations, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    assert anon_client.get("/fhir/Organization/org-gp-practice", headers=h).status_code == 200
    assert anon_client.get("/fhir/Practitioner/prac-nina", headers=h).status_code == 200
    r = anon_client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Mine"}, headers=h)
    assert r.status_code == 403


def test_a_patient_writes_only_what_their_scopes_name(observations, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    goal = {"resourceType": "Goal", "lifecycleStatus": "proposed", "description": {"text": "Walk to the shop"},
            "subject": {"reference": "Patient/pat-pat"}}
    assert anon_client.post("/fhir/Goal", json=goal, headers=h).status_code == 201  # patient/Goal.cru
    assert anon_client.post("/fhir/Observation", json=_obs("survey"), headers=h).status_code == 403
    lab = observations["laboratory"]
    assert anon_client.delete(f"/fhir/Observation/{lab}", headers=h).status_code == 403


def test_a_token_without_any_resource_scope_reaches_nothing(observations, anon_client, clean_services):
    from service.auth import demo as auth_demo
    from service.auth.scopes import ScopeSet
    from tests.auth.conftest import bearer

    ada = next(u for u in auth_demo.users() if u.username == "admin.ada")
    token, _ = clean_services.auth.tokens.access_token(scope=ScopeSet.parse("openid fhirUser"),
                                                                 client_id="t", user=ada, ttl=300)
    h = bearer(token)
    assert anon_client.get(f"/fhir/Observation/{observations['laboratory']}", headers=h).status_code == 403
    assert anon_client.get("/fhir/Observation", headers=h).status_code == 403
    assert anon_client.get("/fhir/_history", headers=h).status_code == 403
    assert anon_client.get("/fhir/metadata", headers=h).status_code == 200
