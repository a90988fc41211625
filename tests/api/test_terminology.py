"""Terminology over what the server holds (service/validation/terminology.py, service/operations/terminology.py,
service/search/valueset_modifiers.py), on both databases: ValueSet/$expand, ValueSet/$validate-code,
CodeSystem/$validate-code, and the `:in` / `:not-in` search modifiers with ValueSets stored here."""

from __future__ import annotations

import pytest

from tests.api.support import FHIR, assert_outcome

HEADERS = {"Content-Type": FHIR}
CS_URL = "https://sharedcare.example.org/fhir/CodeSystem/test-needs"
VS_MOBILITY = "https://sharedcare.example.org/fhir/ValueSet/test-mobility"
VS_VITALS = "https://sharedcare.example.org/fhir/ValueSet/test-vitals"
LOINC = "http://loinc.org"


@pytest.fixture
def terms(client):  # type: ignore[no-untyped-def]
    def post(res):  # type: ignore[no-untyped-def]
        r = client.post(f"/fhir/{res['resourceType']}", json=res, headers=HEADERS)
        assert r.status_code == 201, r.text
        return r.json()

    post({"resourceType": "CodeSystem", "url": CS_URL, "status": "active", "content": "complete",
          "concept": [{"code": "mobility", "display": "Mobility", "concept": [
              {"code": "walking", "display": "Walking"}, {"code": "stairs", "display": "Managing stairs"}]},
              {"code": "nutrition", "display": "Nutrition"}]})
    mobility = post({"resourceType": "ValueSet", "url": VS_MOBILITY, "status": "active", "compose": {"include": [
        {"system": CS_URL, "filter": [{"property": "concept", "op": "is-a", "value": "mobility"}]}]}})
    vitals = post({"resourceType": "ValueSet", "url": VS_VITALS, "status": "active", "compose": {"include": [
        {"system": LOINC, "concept": [{"code": "8867-4", "display": "Heart rate"}, {"code": "8480-6"}]}]}})
    return {"mobility": mobility, "vitals": vitals}


def _codes(body):  # type: ignore[no-untyped-def]
    return sorted(c["code"] for c in body["expansion"].get("contains", []))


def test_expand_by_url_by_id_with_filter_and_paging(client, terms):
    r = client.get("/fhir/ValueSet/$expand", params={"url": VS_MOBILITY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "ValueSet" and body["expansion"]["total"] == 3
    assert _codes(body) == ["mobility", "stairs", "walking"]
    assert {c["display"] for c in body["expansion"]["contains"]} == {"Mobility", "Walking", "Managing stairs"}
    by_id = client.get(f"/fhir/ValueSet/{terms['mobility']['id']}/$expand").json()
    assert _codes(by_id) == _codes(body)
    assert _codes(client.get("/fhir/ValueSet/$expand", params={"url": VS_MOBILITY, "filter": "stair"}).json()) \
        == ["stairs"]
    page = client.get("/fhir/ValueSet/$expand", params={"url": VS_MOBILITY, "offset": 1, "count": 1}).json()
    assert page["expansion"]["total"] == 3 and len(page["expansion"]["contains"]) == 1
    inline = client.post("/fhir/ValueSet/$expand", headers=HEADERS, json={"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "draft", "compose": {"include": [
            {"system": CS_URL, "filter": [{"property": "concept", "op": "descendent-of", "value": "mobility"}]}]}}}]})
    assert _codes(inline.json()) == ["stairs", "walking"]
    gender = client.get("/fhir/ValueSet/$expand",
                        params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender"}).json()
    assert _codes(gender) == ["female", "male", "other", "unknown"]


def test_expand_errors_name_what_is_missing(client, terms):
    assert_outcome(client.get("/fhir/ValueSet/$expand", params={"url": "https://nowhere.example.org/vs"}),
                   404, "https://nowhere.example.org/vs")
    assert_outcome(client.get("/fhir/ValueSet/$expand"), 400, "url")
    r = client.post("/fhir/ValueSet", headers=HEADERS, json={
        "resourceType": "ValueSet", "url": "https://sharedcare.example.org/fhir/ValueSet/all-snomed",
        "status": "active", "compose": {"include": [{"system": "http://snomed.info/sct"}]}})
    assert r.status_code == 201
    assert_outcome(client.get("/fhir/ValueSet/$expand",
                              params={"url": "https://sharedcare.example.org/fhir/ValueSet/all-snomed"}),
                   422, "http://snomed.info/sct", "not held")


def test_validate_code_against_valuesets_and_codesystems(client, terms):
    def result(path, **params):  # type: ignore[no-untyped-def]
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in r.json()["parameter"]}

    assert result("/fhir/ValueSet/$validate-code", url=VS_MOBILITY, system=CS_URL, code="walking") == {
        "result": True, "display": "Walking"}
    out = result("/fhir/ValueSet/$validate-code", url=VS_MOBILITY, system=CS_URL, code="nutrition")
    assert out["result"] is False and VS_MOBILITY in out["message"]
    assert result("/fhir/ValueSet/$validate-code", url=VS_VITALS, system=LOINC, code="8867-4",
                  display="Pulse")["result"] is False
    assert result("/fhir/CodeSystem/$validate-code", url=CS_URL, code="stairs")["result"] is True
    assert result("/fhir/CodeSystem/$validate-code", url=CS_URL, code="flying")["result"] is False
    post = client.post("/fhir/ValueSet/$validate-code", headers=HEADERS, json={"resourceType": "Parameters",
                       "parameter": [{"name": "url", "valueUri": VS_VITALS},
                                     {"name": "coding", "valueCoding": {"system": LOINC, "code": "8480-6"}}]})
    assert post.json()["parameter"][0] == {"name": "result", "valueBoolean": True}
    assert_outcome(client.get("/fhir/CodeSystem/$validate-code", params={"url": "https://nowhere.example.org/cs",
                                                                          "code": "x"}), 404, "nowhere")


def test_in_and_not_in_search_with_stored_valuesets(client, terms):
    ids = {}
    for code in ("8867-4", "8480-6", "2339-0"):
        r = client.post("/fhir/Observation", headers=HEADERS, json={
            "resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": code}]}})
        ids[code] = r.json()["id"]

    def found(query):  # type: ignore[no-untyped-def]
        r = client.get(f"/fhir/Observation?{query}", headers={"Prefer": "handling=strict"})
        assert r.status_code == 200, r.text
        return sorted(e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match")

    assert found(f"code:in={VS_VITALS}") == sorted([ids["8867-4"], ids["8480-6"]])
    assert found(f"code:in=ValueSet/{terms['vitals']['id']}") == sorted([ids["8867-4"], ids["8480-6"]])
    assert found(f"code:not-in={VS_VITALS}") == [ids["2339-0"]]
    assert found(f"code:in={VS_MOBILITY}") == []
    assert found(f"code:in={VS_MOBILITY},{VS_VITALS}") == sorted([ids["8867-4"], ids["8480-6"]])
    assert_outcome(client.get("/fhir/Observation?code:in=https://nowhere.example.org/vs",
                              headers={"Prefer": "handling=strict"}), 400, "nowhere")
