"""PATCH in its three formats (JSON Patch, JSON merge patch, FHIRPath Patch), instance and conditional: what a
client gets back, what is stored, the errors that name the problem, If-Match, and a resource the caller may not
see answering exactly as a missing one (both databases)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import assert_outcome, patient
from tests.policy.conftest import PEOPLE
from tests.policy.support import observation
from tests.workflows.support import As

FHIR = {"Content-Type": "application/fhir+json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The demo record, and every demo identity as a caller with its own token (as in tests/policy)."""
    return {short: As(client, auth_headers(user)) for short, user in PEOPLE.items()}


def op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})
        elif name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"name": "operation", "part": out}


def params(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def created(client: Any, res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def stored(client: Any, url: str) -> dict[str, Any]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# -- FHIRPath Patch -------------------------------------------------------------------------------------
def test_fhirpath_patch_every_operation(client):  # type: ignore[no-untyped-def]
    p = created(client, patient(birthDate="1970-01-01", identifier=[{"system": "urn:a", "value": "1"},
                                                                    {"system": "urn:b", "value": "2"}]))
    url = f"/fhir/Patient/{p['id']}"
    body = params(
        op("add", "Patient", name="active", value={"valueBoolean": True}),
        op("add", "Patient", name="name", value={"part": [{"name": "family", "valueString": "Jones"},
                                                          {"name": "given", "valueString": "Al"}]}),
        op("replace", "Patient.birthDate", value={"valueDate": "1980-02-03"}),
        op("delete", "Patient.identifier.where(system='urn:b')"),
        op("insert", "Patient.name[0].given", value={"valueString": "Bo"}, index=0),
        op("move", "Patient.name", source=1, destination=0),
        op("add", "Patient", name="telecom", value={"valueContactPoint": {"system": "phone", "value": "0113"}}),
        op("delete", "Patient.deceased"),  # matches nothing: nothing happens
    )
    r = client.patch(url, json=body, headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == 'W/"2"'
    got = r.json()
    assert got["active"] is True
    assert got["birthDate"] == "1980-02-03"
    assert got["identifier"] == [{"system": "urn:a", "value": "1"}]
    assert got["name"] == [{"family": "Jones", "given": ["Al"]}, {"family": "Smith", "given": ["Bo", "Jo"]}]
    assert got["telecom"] == [{"system": "phone", "value": "0113"}]
    assert stored(client, url) == got
    history = client.get(f"{url}/_history").json()["entry"]
    assert [e["request"]["method"] for e in history] == ["PATCH", "POST"]


def test_fhirpath_patch_replace_in_a_list_and_a_choice_element(client):  # type: ignore[no-untyped-def]
    o = created(client, {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                         "valueQuantity": {"value": 70.5, "unit": "kg"}, "note": [{"text": "a"}, {"text": "b"}]})
    url = f"/fhir/Observation/{o['id']}"
    r = client.patch(url, json=params(
        op("replace", "Observation.value", value={"valueQuantity": {"value": 71.25, "unit": "kg"}}),
        op("replace", "Observation.note[1].text", value={"valueMarkdown": "B"}),
    ), headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.json()["valueQuantity"] == {"value": 71.25, "unit": "kg"}
    assert r.json()["note"] == [{"text": "a"}, {"text": "B"}]
    r = client.patch(url, json=params(op("replace", "Observation.value", value={"valueString": "heavy"})),
                     headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.json()["valueString"] == "heavy" and "valueQuantity" not in r.json()
    r = client.patch(url, json=params(op("delete", "Observation.value"),
                                      op("add", "Observation", name="value", value={"valueBoolean": True}),
                                      op("add", "Observation", name="effective",
                                         value={"valueDateTime": "2024-01-01"})), headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.json()["valueBoolean"] is True and "valueString" not in r.json()
    assert r.json()["effectiveDateTime"] == "2024-01-01"
    assert_outcome(client.patch(url, json=params(op("add", "Observation", name="value", value={"valueInteger": 1})),
                                headers=FHIR), 422, "already has a value")


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"resourceType": "Parameters"}, 400, ["operation"]),
    (params({"name": "op", "part": []}), 400, ["'operation'"]),
    (params(op("frobnicate", "Patient")), 400, ["type must be one of", "frobnicate"]),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "add"}]}), 400, ["'path'"]),
    (params(op("add", "Patient", value={"valueBoolean": True})), 400, ["'name'"]),
    (params(op("replace", "Patient.name[", value={"valueString": "x"})), 400, ["FHIRPath", "Patient.name["]),
    (params(op("replace", "Patient.name((", value={"valueString": "x"})), 400, ["FHIRPath", "name"]),
    (params(op("insert", "Patient.name", value={"valueString": "x"}, index=-1)), 400, ["index"]),
    (params(op("replace", "Patient.birthDate", value={"valueDate": "2000-01-01"})), 422, ["matches no element"]),
    (params(op("replace", "Patient.name.given", value={"valueString": "x"})), 422, ["matches 2 elements"]),
    (params(op("add", "Patient", name="gender", value={"valueCode": "male"})), 422, ["already has a value",
                                                                                     "replace"]),
    (params(op("insert", "Patient.name", value={"valueHumanName": {"family": "X"}}, index=5)), 422,
     ["index 5", "1 items"]),
    (params(op("move", "Patient.name", source=0, destination=3)), 422, ["destination 3"]),
    (params(op("delete", "Patient")), 422, ["resource itself"]),
    (params(op("replace", "Patient.id", value={"valueId": "other"})), 422, ["resourceType or id"]),
    (params(op("replace", "Patient.gender", value={"valueCode": 7})), 422, ["gender"]),
])
def test_fhirpath_patch_errors_name_the_problem(client, body, status, words):  # type: ignore[no-untyped-def]
    p = created(client, patient(name=[{"family": "Smith", "given": ["Jo", "Al"]}]))
    url = f"/fhir/Patient/{p['id']}"
    assert_outcome(client.patch(url, json=body, headers=FHIR), status, *words)
    assert stored(client, url) == p  # nothing half-written


# -- JSON merge patch -----------------------------------------------------------------------------------
def test_merge_patch_sets_replaces_and_removes(client):  # type: ignore[no-untyped-def]
    p = created(client, patient(birthDate="1970-01-01", telecom=[{"system": "phone", "value": "1"}]))
    url = f"/fhir/Patient/{p['id']}"
    r = client.patch(url, json={"birthDate": None, "gender": "male", "telecom": [{"system": "email", "value": "a@b"}],
                                "name": [{"family": "Jones"}]}, headers=MERGE)
    assert r.status_code == 200, r.text
    got = r.json()
    assert "birthDate" not in got
    assert got["gender"] == "male"
    assert got["telecom"] == [{"system": "email", "value": "a@b"}]
    assert got["name"] == [{"family": "Jones"}]
    assert got["meta"]["versionId"] == "2"
    assert stored(client, url) == got


def test_merge_patch_as_fhirpy_sends_it(client):  # type: ignore[no-untyped-def]
    """fhirpy's resource.patch() sends a plain JSON object as application/json."""
    p = created(client, patient())
    r = client.patch(f"/fhir/Patient/{p['id']}", json={"active": False}, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["name"] == p["name"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ([1, 2], 415, ["text/plain"]),
    ("text", 400, ["JSON object"]),
    ({"resourceType": "Observation"}, 422, ["resourceType or id"]),
    ({"id": "another"}, 422, ["resourceType or id"]),
    ({"gender": "xyz-not-a-date", "birthDate": "yesterday"}, 422, ["birthDate"]),
])
def test_merge_patch_errors(client, body, status, words):  # type: ignore[no-untyped-def]
    p = created(client, patient())
    url = f"/fhir/Patient/{p['id']}"
    headers = MERGE if not isinstance(body, list) else {"Content-Type": "text/plain"}
    assert_outcome(client.patch(url, json=body, headers=headers), status, *words)
    assert stored(client, url) == p


# -- formats, If-Match, conditional ---------------------------------------------------------------------
def test_json_patch_still_works_and_other_types_get_415(client):  # type: ignore[no-untyped-def]
    p = created(client, patient())
    url = f"/fhir/Patient/{p['id']}"
    r = client.patch(url, json=[{"op": "add", "path": "/active", "value": True}], headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["active"] is True
    assert_outcome(client.patch(url, json=[{"op": "replace", "path": "/active", "value": False}],
                                headers={"Content-Type": "application/json"}), 415, "application/json-patch+json")
    assert_outcome(client.patch(url, content=b"<Parameters/>", headers={"Content-Type": "application/xml"}), 400,
                   "FHIR namespace")
    assert_outcome(client.patch(url, content=b"a=b", headers={"Content-Type": "text/plain"}), 415, "text/plain")
    assert_outcome(client.patch(url, json=[{"op": "test", "path": "/active", "value": False}], headers=JSON_PATCH),
                   422, "test failed")


def test_if_match_is_honoured_by_every_format(client):  # type: ignore[no-untyped-def]
    p = created(client, patient())
    url = f"/fhir/Patient/{p['id']}"
    stale = {"If-Match": 'W/"7"'}
    for headers, body in ((FHIR, params(op("add", "Patient", name="active", value={"valueBoolean": True}))),
                          (MERGE, {"active": True}),
                          (JSON_PATCH, [{"op": "add", "path": "/active", "value": True}])):
        assert_outcome(client.patch(url, json=body, headers={**headers, **stale}), 412, "version 1", "not 7")
    assert stored(client, url)["meta"]["versionId"] == "1"
    r = client.patch(url, json={"active": True}, headers={**MERGE, "If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"2"'


def test_conditional_patch(client):  # type: ignore[no-untyped-def]
    a = created(client, patient(identifier=[{"system": "urn:x", "value": "a"}]))
    created(client, patient(identifier=[{"system": "urn:x", "value": "b"}]))
    created(client, patient(identifier=[{"system": "urn:x", "value": "b"}]))
    r = client.patch("/fhir/Patient?identifier=urn:x|a", json={"active": True}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == a["id"] and r.json()["active"] is True
    r = client.patch("/fhir/Patient?identifier=urn:x|a", headers=FHIR,
                     json=params(op("replace", "Patient.active", value={"valueBoolean": False})))
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["meta"]["versionId"] == "3"
    assert_outcome(client.patch("/fhir/Patient?identifier=urn:x|zzz", json={"active": True}, headers=MERGE), 404,
                   "matched no Patient")
    assert_outcome(client.patch("/fhir/Patient?identifier=urn:x|b", json={"active": True}, headers=MERGE), 412,
                   "matched 2")
    assert_outcome(client.patch("/fhir/Patient", json={"active": True}, headers=MERGE), 400, "search criteria")
    assert_outcome(client.patch("/fhir/Patient?nonsense-param=1", json={"active": True}, headers=MERGE), 400,
                   "nonsense-param")


def test_patch_of_a_deleted_resource_is_410(client):  # type: ignore[no-untyped-def]
    p = created(client, patient())
    assert client.delete(f"/fhir/Patient/{p['id']}").status_code == 204
    assert_outcome(client.patch(f"/fhir/Patient/{p['id']}", json={"active": True}, headers=MERGE), 410)


def test_audit_events_cannot_be_patched(client):  # type: ignore[no-untyped-def]
    assert_outcome(client.patch("/fhir/AuditEvent?_id=x", json={"outcome": "0"}, headers=MERGE), 405,
                   "append-only")


# -- hidden is missing ----------------------------------------------------------------------------------
def _same(a: Any, b: Any, ids: tuple[str, str]) -> None:
    def shape(r: Any, rid: str) -> tuple[int, str, dict[str, str]]:
        headers = {k: v for k, v in r.headers.items() if k.lower() not in ("x-request-id", "date", "content-length")}
        return r.status_code, r.text.replace(rid, "ID"), headers

    assert shape(a, ids[0]) == shape(b, ids[1])


@pytest.mark.parametrize("fmt", ["fhirpath", "merge", "json-patch"])
def test_a_hidden_resource_answers_patch_as_a_missing_one(who, fmt):  # type: ignore[no-untyped-def]
    hidden = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "private")).json()["id"]
    body, headers = {
        "fhirpath": (params(op("replace", "Observation.status", value={"valueCode": "amended"})), FHIR),
        "merge": ({"status": "amended"}, MERGE),
        "json-patch": ([{"op": "replace", "path": "/status", "value": "amended"}], JSON_PATCH),
    }[fmt]
    wes = who["wes"]  # no care relationship with Paula
    for extra in ({}, {"If-Match": 'W/"1"'}):
        h = {**headers, **extra}
        _same(wes.patch(f"/fhir/Observation/{hidden}", json=body, headers=h),
              wes.patch(f"/fhir/Observation/{MISSING}", json=body, headers=h), (hidden, MISSING))
        _same(wes.patch(f"/fhir/Observation?_id={hidden}", json=body, headers=h),
              wes.patch(f"/fhir/Observation?_id={MISSING}", json=body, headers=h), (hidden, MISSING))
    r = wes.patch(f"/fhir/Observation/{hidden}", json=body, headers=headers)
    assert r.status_code == 404
    assert who["ada"].get(f"/fhir/Observation/{hidden}").json()["meta"]["versionId"] == "1"  # unchanged


# -- in Bundles -----------------------------------------------------------------------------------------
def test_transaction_patch_entries_in_every_format(client):  # type: ignore[no-untyped-def]
    import base64

    import orjson

    p = created(client, patient())
    merge = base64.b64encode(orjson.dumps({"active": True})).decode()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:org", "resource": {"resourceType": "Organization", "name": "Council"},
         "request": {"method": "POST", "url": "Organization"}},
        {"resource": params(op("add", "Patient", name="managingOrganization",
                               value={"valueReference": {"reference": "urn:uuid:org"}})),
         "request": {"method": "PATCH", "url": f"Patient/{p['id']}"}},
    ]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    org = r.json()["entry"][0]["response"]["location"].split("/_history", 1)[0].split("/fhir/", 1)[-1]
    got = stored(client, f"/fhir/Patient/{p['id']}")
    assert got["managingOrganization"] == {"reference": org}
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Binary", "contentType": "application/merge-patch+json", "data": merge},
         "request": {"method": "PATCH", "url": f"Patient/{p['id']}"}},
        {"resource": params(op("replace", "Patient.nothing", value={"valueString": "x"})),
         "request": {"method": "PATCH", "url": f"Patient/{p['id']}"}}]})
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"].startswith("200") and second["response"]["status"].startswith("422")
    assert stored(client, f"/fhir/Patient/{p['id']}")["active"] is True
