"""Scope escalation: a token in a patient context (patient.pat, or a professional launched with patient
pat-pat and patient/ scopes) must not reach another patient (patient.paula, Patient/pat-paula) by read,
vread, search (plain, chained, _has, compartment, whole-system), _include, _revinclude, $everything, history
(instance, type, system), nor inside a batch or transaction Bundle. Positive controls show the same requests
do reach the patient's own record, so the refusals are not vacuous. The data is written with the admin
token. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.auth.conftest import bearer

PAULA = "pat-paula"
NHS_PAULA = "9449306753"
LOINC = "http://loinc.org"


def _obs(patient: str, code: str, members: tuple[str, ...] = ()) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": LOINC, "code": code}], "text": f"obs {code}"},
                           "subject": {"reference": f"Patient/{patient}"}}
    if members:
        res["hasMember"] = [{"reference": f"Observation/{m}"} for m in members]
    return res


@pytest.fixture
def records(demo, client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each patient's own records, with cross references between their Observations (hasMember is not a
    compartment link, so each Observation stays in its own patient's compartment only)."""
    def post(res: dict[str, Any]) -> str:
        r = client.post(f"/fhir/{res['resourceType']}", json=res)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    ids: dict[str, str] = {}
    ids["obs_pat"] = post(_obs("pat-pat", "8867-4"))
    ids["obs_paula"] = post(_obs(PAULA, "8867-4", (ids["obs_pat"],)))  # Paula's points at Pat's
    ids["obs_pat2"] = post(_obs("pat-pat", "8480-6", (ids["obs_paula"],)))  # Pat's points at Paula's
    ids["cond_paula"] = post({"resourceType": "Condition", "subject": {"reference": f"Patient/{PAULA}"},
                              "code": {"text": "Paula's condition"}})
    ids["cond_pat"] = post({"resourceType": "Condition", "subject": {"reference": "Patient/pat-pat"},
                            "code": {"text": "Pat's condition"}})
    ids["goal_paula"] = post({"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "walk"},
                              "subject": {"reference": f"Patient/{PAULA}"}})
    # A second version of Paula's Observation, for history.
    upd = client.put(f"/fhir/Observation/{ids['obs_paula']}", json={**_obs(PAULA, "8867-4", (ids["obs_pat"],)),
                                                                    "id": ids["obs_paula"], "status": "amended"})
    assert upd.status_code == 200
    return ids


IDENTITIES = {
    "patient": lambda auth: auth("patient.pat"),
    "nurse-in-patient-context": lambda auth: auth("nurse.nina", patient="pat-pat",
                                                  scope="patient/*.rs launch/patient"),
    "carer": lambda auth: auth("carer.carl"),
}


@pytest.fixture(params=list(IDENTITIES))
def who(request, auth_headers):  # type: ignore[no-untyped-def]
    return request.param, IDENTITIES[request.param](auth_headers)


def _paula_ids(records: dict[str, str]) -> set[str]:
    return {f"Patient/{PAULA}", f"Observation/{records['obs_paula']}", f"Condition/{records['cond_paula']}",
            f"Goal/{records['goal_paula']}"}


def _entries(body: dict[str, Any]) -> list[str]:
    """Type/id of every resource in a Bundle (nested Bundles of a batch response included)."""
    out = []
    for e in body.get("entry", []):
        res = e.get("resource") or {}
        if res.get("resourceType") == "OperationOutcome":
            continue
        if res.get("resourceType") == "Bundle":
            out.extend(_entries(res))
        elif res:
            out.append(f"{res['resourceType']}/{res['id']}")
        elif "request" in e:
            out.append(e["request"]["url"])
    return out


def _no_paula(r: Any, records: dict[str, str]) -> list[str]:
    """Nothing of Paula's in the answer: not her resources, not her name or NHS number (links, which echo the
    query, aside)."""
    body = r.json()
    if r.status_code == 200 and body.get("resourceType") == "Bundle":
        got = _entries(body)
        assert not (set(got) & _paula_ids(records)), got
        shown = json.dumps([e.get("resource") for e in body.get("entry", [])
                            if e.get("resource", {}).get("resourceType") != "AuditEvent"])
        assert NHS_PAULA not in shown and "Paula's condition" not in shown and '"Sample"' not in shown
        return got
    assert r.status_code in (403, 404, 405), r.text  # (405: a PUT of an id she may not know)
    assert body["resourceType"] == "OperationOutcome"
    assert NHS_PAULA not in r.text and "Paula's condition" not in r.text
    return []


# -- read and vread ---------------------------------------------------------------------------------------------
def test_read_and_vread_of_the_other_patient_are_refused(records, anon_client, who):
    _name, h = who
    for path in (f"/fhir/Patient/{PAULA}", f"/fhir/Observation/{records['obs_paula']}",
                 f"/fhir/Observation/{records['obs_paula']}/_history/1",
                 f"/fhir/Observation/{records['obs_paula']}/_history/2",
                 f"/fhir/Condition/{records['cond_paula']}", f"/fhir/Goal/{records['goal_paula']}"):
        r = anon_client.get(path, headers=h)
        assert r.status_code in (403, 404), (path, r.status_code)
        _no_paula(r, records)
    # A refusal looks like an unknown id: existence does not leak.
    unknown = anon_client.get("/fhir/Patient/pat-nobody", headers=h)
    assert anon_client.get(f"/fhir/Patient/{PAULA}", headers=h).status_code == unknown.status_code


def test_positive_control_own_record_is_readable(records, anon_client, auth_headers):
    for h in (auth_headers("patient.pat"), auth_headers("nurse.nina", patient="pat-pat", scope="patient/*.rs")):
        assert anon_client.get("/fhir/Patient/pat-pat", headers=h).status_code == 200
        assert anon_client.get(f"/fhir/Observation/{records['obs_pat']}", headers=h).status_code == 200
        assert anon_client.get(f"/fhir/Observation/{records['obs_pat']}/_history/1", headers=h).status_code == 200


# -- search -------------------------------------------------------------------------------------------------------
SEARCHES = [
    "/fhir/Patient?_id=pat-paula",
    f"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS_PAULA}",
    "/fhir/Patient?name=Paula",
    "/fhir/Patient?family=Sample&_total=accurate",
    "/fhir/Observation?subject=Patient/pat-paula",
    "/fhir/Observation?patient=pat-paula&_total=accurate",
    "/fhir/Observation?code=8867-4&_total=accurate",
    "/fhir/Condition?subject=Patient/pat-paula",
    "/fhir/Observation?subject:Patient.name=Paula",
    "/fhir/Observation?subject:Patient.identifier=" + NHS_PAULA,
    "/fhir/Patient?_has:Condition:subject:code:text=Paula",
    "/fhir/Patient?_has:Observation:subject:status=amended",
    "/fhir/Patient/pat-paula/Observation",
    "/fhir/Patient/pat-paula/Condition?_total=accurate",
    "/fhir?_type=Patient,Observation,Condition,Goal",
    "/fhir/Goal",
]


@pytest.mark.parametrize("path", SEARCHES)
def test_search_never_returns_or_counts_the_other_patient(records, anon_client, who, path):
    _name, h = who
    r = anon_client.get(path, headers=h)
    _no_paula(r, records)
    if r.status_code == 200 and "total" in r.json():  # a count that includes hidden rows would leak them
        body = r.json()
        matches = [e for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        assert body["total"] == len(matches), body


def test_search_positive_control(records, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    r = anon_client.get("/fhir/Observation?code=8867-4&_total=accurate", headers=h)
    assert r.status_code == 200 and _entries(r.json()) == [f"Observation/{records['obs_pat']}"]
    assert r.json()["total"] == 1
    r = anon_client.get("/fhir/Patient?_has:Condition:subject:code:text=Pat", headers=h)
    assert _entries(r.json()) == ["Patient/pat-pat"]
    r = anon_client.get("/fhir/Patient/pat-pat/Observation", headers=h)
    assert set(_entries(r.json())) == {f"Observation/{records['obs_pat']}", f"Observation/{records['obs_pat2']}"}


# -- _include and _revinclude ------------------------------------------------------------------------------------
INCLUDES = [
    "/fhir/Observation?_include=Observation:has-member",
    "/fhir/Observation?_include:iterate=Observation:has-member",
    "/fhir/Observation?_revinclude=Observation:has-member",
    "/fhir/Observation?_revinclude:iterate=Observation:has-member&_include:iterate=Observation:has-member",
    "/fhir/Observation?_include=Observation:subject&_include=Observation:patient",
    "/fhir/Patient?_revinclude=Condition:subject&_revinclude=Observation:subject&_revinclude=Goal:subject",
    "/fhir/Patient?_id=pat-paula&_revinclude=Observation:subject",
    "/fhir/Condition?_include=Condition:subject",
    "/fhir/Observation?_include=*",
]


@pytest.mark.parametrize("path", INCLUDES)
def test_include_and_revinclude_never_bring_in_the_other_patient(records, anon_client, who, path):
    _name, h = who
    _no_paula(anon_client.get(path, headers=h), records)


def test_include_positive_control(records, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    r = anon_client.get("/fhir/Observation?_revinclude=Observation:has-member&_include=Observation:subject",
                        headers=h)
    got = set(_entries(r.json()))
    assert {f"Observation/{records['obs_pat']}", f"Observation/{records['obs_pat2']}", "Patient/pat-pat"} <= got
    r = anon_client.get("/fhir/Patient?_revinclude=Condition:subject", headers=h)
    assert set(_entries(r.json())) == {"Patient/pat-pat", f"Condition/{records['cond_pat']}"}


# -- $everything ---------------------------------------------------------------------------------------------------
def test_everything_of_the_other_patient_is_refused(records, anon_client, who):
    _name, h = who
    for path in (f"/fhir/Patient/{PAULA}/$everything", f"/fhir/Patient/{PAULA}/$everything?_type=Observation"):
        r = anon_client.get(path, headers=h)
        assert r.status_code in (403, 404), r.text
        _no_paula(r, records)
    r = anon_client.post(f"/fhir/Patient/{PAULA}/$everything", headers=h,
                         json={"resourceType": "Parameters"})
    assert r.status_code in (403, 404)


def test_everything_of_the_own_record_leaves_the_other_patient_out(records, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    r = anon_client.get("/fhir/Patient/pat-pat/$everything?_type=Patient,Observation,Condition", headers=h)
    assert r.status_code == 200, r.text
    got = set(_no_paula(r, records))
    assert {"Patient/pat-pat", f"Observation/{records['obs_pat']}", f"Observation/{records['obs_pat2']}",
            f"Condition/{records['cond_pat']}"} <= got
    whole = anon_client.get("/fhir/Patient/pat-pat/$everything", headers=h)
    assert whole.status_code == 200, whole.text
    assert got <= set(_no_paula(whole, records))


# -- history ----------------------------------------------------------------------------------------------------------
def test_history_never_shows_the_other_patient(records, anon_client, who):
    _name, h = who
    for path in (f"/fhir/Patient/{PAULA}/_history", f"/fhir/Observation/{records['obs_paula']}/_history"):
        r = anon_client.get(path, headers=h)
        assert r.status_code == 404, (path, r.text)  # as for an unknown id: existence does not leak
        _no_paula(r, records)
    for path in ("/fhir/Observation/_history", "/fhir/Patient/_history", "/fhir/Condition/_history",
                 "/fhir/_history?_count=500"):
        r = anon_client.get(path, headers=h)
        assert r.status_code == 200
        _no_paula(r, records)


def test_history_positive_control(records, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    r = anon_client.get("/fhir/Observation/_history", headers=h)
    assert set(_entries(r.json())) == {f"Observation/{records['obs_pat']}", f"Observation/{records['obs_pat2']}"}
    assert anon_client.get(f"/fhir/Observation/{records['obs_pat']}/_history", headers=h).status_code == 200


# -- batch and transaction --------------------------------------------------------------------------------------------
def _goal(patient: str) -> dict[str, Any]:
    return {"resourceType": "Goal", "lifecycleStatus": "proposed", "description": {"text": "what matters to me"},
            "subject": {"reference": f"Patient/{patient}"}}


def _goals(client: Any) -> set[str]:
    return {e["resource"]["id"] for e in client.get("/fhir/Goal?_count=100").json().get("entry", [])}


def test_batch_entries_are_checked_one_by_one(records, anon_client, client, auth_headers):
    h = auth_headers("patient.pat")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{PAULA}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{PAULA}"}},
        {"request": {"method": "GET", "url": f"Patient/{PAULA}/$everything"}},
        {"request": {"method": "GET", "url": f"Observation/{records['obs_paula']}/_history"}},
        {"request": {"method": "POST", "url": "Goal"}, "resource": _goal(PAULA)},
        {"request": {"method": "PUT", "url": f"Goal/{records['goal_paula']}"},
         "resource": {**_goal("pat-pat"), "id": records["goal_paula"]}},
        {"request": {"method": "DELETE", "url": f"Goal/{records['goal_paula']}"}},
        {"request": {"method": "GET", "url": "Patient/pat-pat"}},
        {"request": {"method": "POST", "url": "Goal"}, "resource": _goal("pat-pat")},
    ]}
    before = _goals(client)
    r = anon_client.post("/fhir", json=bundle, headers=h)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"].split()[0] for e in r.json()["entry"]]
    assert statuses[0] in ("403", "404")
    assert statuses[1] == "200" and r.json()["entry"][1]["resource"].get("total", 0) == 0
    assert statuses[2] in ("403", "404") and statuses[3] in ("403", "404")
    assert statuses[4] == "403"  # creating a record in Paula's compartment
    # taking Paula's Goal over by moving it into Pat's compartment: a hidden id answers as a missing one (405: no
    # update-as-create for her)
    assert statuses[5] in ("403", "404", "405")
    assert statuses[6] in ("403", "404")  # no d permission, and not Pat's anyway
    assert statuses[7:] == ["200", "201"]  # the patient's own entries go through
    _no_paula(r, records)
    after = _goals(client)
    assert len(after - before) == 1 and records["goal_paula"] in after
    paula_goal = client.get(f"/fhir/Goal/{records['goal_paula']}").json()
    assert paula_goal["subject"]["reference"] == f"Patient/{PAULA}" and paula_goal["meta"]["versionId"] == "1"


def test_a_transaction_reaching_the_other_patient_fails_whole(records, anon_client, client, auth_headers):
    h = auth_headers("patient.pat")
    before = _goals(client)
    for bad in ({"request": {"method": "POST", "url": "Goal"}, "resource": _goal(PAULA)},
                {"request": {"method": "GET", "url": f"Patient/{PAULA}"}},
                {"request": {"method": "PUT", "url": f"Goal/{records['goal_paula']}"},
                 "resource": {**_goal("pat-pat"), "id": records["goal_paula"]}},
                {"request": {"method": "POST", "url": "Consent"},
                 "resource": {"resourceType": "Consent", "status": "active",
                              "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                                    "code": "patient-privacy"}]},
                              "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                              "patient": {"reference": f"Patient/{PAULA}"}, "policyRule": {"text": "opt out"},
                              "provision": {"type": "deny"}}}):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b7d2a3e-1111-4c3e-9f00-000000000001",
             "request": {"method": "POST", "url": "Goal"}, "resource": _goal("pat-pat")},
            bad,
        ]}
        r = anon_client.post("/fhir", json=bundle, headers=h)
        assert r.status_code in (403, 404, 405), r.text  # (405: PUT of an id she may not know, as of a missing one)
        assert r.json()["resourceType"] == "OperationOutcome"
        _no_paula(r, records)
    assert _goals(client) == before  # all or nothing: Pat's own Goal was not written either
    ok = anon_client.post("/fhir", headers=h, json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b7d2a3e-1111-4c3e-9f00-000000000002",
         "request": {"method": "POST", "url": "Goal"}, "resource": _goal("pat-pat")}]})
    assert ok.status_code == 200 and len(_goals(client) - before) == 1


# -- writes outside the compartment ---------------------------------------------------------------------------------
def test_a_patient_cannot_move_their_record_into_another_patients_compartment(records, anon_client, auth_headers):
    h = auth_headers("patient.pat")
    mine = anon_client.post("/fhir/Goal", json=_goal("pat-pat"), headers=h)
    assert mine.status_code == 201
    gid = mine.json()["id"]
    moved = anon_client.put(f"/fhir/Goal/{gid}", json={**_goal(PAULA), "id": gid}, headers=h)
    assert moved.status_code == 403
    assert anon_client.get(f"/fhir/Goal/{gid}", headers=h).json()["subject"]["reference"] == "Patient/pat-pat"
    assert anon_client.post("/fhir/Goal", json=_goal(PAULA), headers=h).status_code == 403


def test_patient_scopes_without_a_patient_in_context_reach_no_patient_data(records, anon_client, clean_services):
    from service.auth import demo as auth_demo
    from service.auth.scopes import ScopeSet

    nina = next(u for u in auth_demo.users() if u.username == "nurse.nina")
    token, _ = clean_services.auth.tokens.access_token(scope=ScopeSet.parse("patient/*.rs"),
                                                                 client_id="t", user=nina, ttl=300)
    h = bearer(token)
    for path in ("/fhir/Patient/pat-pat", f"/fhir/Observation/{records['obs_pat']}"):
        assert anon_client.get(path, headers=h).status_code in (403, 404)
    r = anon_client.get("/fhir/Observation", headers=h)
    assert r.status_code in (200, 403) and not _entries(r.json())
