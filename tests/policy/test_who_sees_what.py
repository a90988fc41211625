"""Every demo identity against the demo record: exactly what each can and cannot see, and no leaks through
totals, includes, history, $everything, batches or error responses. Both databases."""

from __future__ import annotations

import pytest

from tests.policy.support import PAT_NHS, by, ids, observation

PAT, PAULA = "Patient/pat-pat", "Patient/pat-paula"

# who may read Patient/pat-pat, Patient/pat-paula and Pat's care plan (written by the community trust)
READS = {
    "nina": (200, 404, 200),   # Pat's care team
    "sam": (200, 404, 200),    # Pat's care team (council)
    "cara": (200, 404, 200),   # Pat's care team, coordinator
    "gary": (200, 200, 200),   # the registered GP of both
    "wes": (404, 404, 404),    # hospital nurse: no care relationship
    "iris": (200, 200, 403),   # IG lead: demographics yes, clinical records no
    "ada": (200, 200, 200),    # administrator
    "pat": (200, 404, 200),    # her own record only
    "paula": (404, 200, 404),
    "carl": (200, 404, 200),   # Pat's carer, by her consent
    "gp": (200, 200, 200),     # the GP practice's system
}


@pytest.mark.parametrize("name", sorted(READS))
def test_each_identity_reads_exactly_what_it_may(who, name):
    got = tuple(who[name].get(f"/fhir/{url}").status_code
                for url in (PAT, PAULA, "CarePlan/careplan-pat-1"))
    assert got == READS[name], name


def test_a_hidden_resource_answers_exactly_like_a_missing_one(who):
    hidden = who["wes"].get("/fhir/CarePlan/careplan-pat-1")
    missing = who["wes"].get("/fhir/CarePlan/no-such-plan")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"] == "not-found"
    assert hidden.json()["issue"][0]["diagnostics"].replace("careplan-pat-1", "X") == \
        missing.json()["issue"][0]["diagnostics"].replace("no-such-plan", "X")
    for url in ("/fhir/CarePlan/careplan-pat-1/_history/1", "/fhir/CarePlan/careplan-pat-1/_history",
                "/fhir/Patient/pat-pat/$everything", "/fhir/Patient/pat-pat/CarePlan"):
        r = who["wes"].get(url)
        assert r.status_code in (404, 200), url
        if r.status_code == 200:
            assert r.json().get("total", 0) == 0 and not ids(r.json()), url


@pytest.mark.parametrize("name,expected", [("nina", ["pat-pat"]), ("gary", ["pat-pat", "pat-paula"]), ("wes", []),
                                           ("pat", ["pat-pat"]), ("paula", ["pat-paula"]), ("carl", ["pat-pat"]),
                                           ("iris", ["pat-pat", "pat-paula"]), ("gp", ["pat-pat", "pat-paula"])])
def test_searches_count_and_page_only_what_each_may_see(who, name, expected):
    body = who[name].get("/fhir/Patient?_total=accurate&_count=1").json()
    assert body["total"] == len(expected)
    seen = []
    url = "/fhir/Patient?_count=1"
    while url:
        page = who[name].get(url).json()
        seen += ids(page)
        nxt = [lk["url"] for lk in page["link"] if lk["relation"] == "next"]
        url = nxt[0].split("http://testserver", 1)[1] if nxt else ""
    assert sorted(seen) == expected
    assert who[name].get("/fhir/Patient?_summary=count").json()["total"] == len(expected)


def test_includes_revincludes_and_chains_leak_nothing(who):
    who["ada"].post("/fhir/Observation", json=observation("pat-paula", "Paula's pulse"))
    r = who["nina"].get("/fhir/Observation?_include=Observation:subject")
    assert ids(r.json()) == []  # Paula's observation is not Nina's to see, nor is Paula
    r = who["nina"].get("/fhir/Patient?_revinclude=Observation:subject&_revinclude=CarePlan:subject")
    assert ids(r.json(), "Patient") == ["pat-pat"] and ids(r.json(), "Observation") == []
    assert ids(r.json(), "CarePlan") == ["careplan-pat-1"]
    # a chain through a patient the caller cannot see finds nothing, and says nothing
    r = who["wes"].get(f"/fhir/CarePlan?subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{PAT_NHS}")
    assert r.json()["total"] == 0
    r = who["nina"].get("/fhir/Patient?_has:Observation:subject:status=final")
    assert r.json()["total"] == 0  # only Paula has an observation, and Nina may not see it


def test_everything_and_compartments_are_confined(who):
    who["ada"].post("/fhir/Observation", json=observation("pat-pat", "Pat's pulse"))
    mine = who["nina"].get("/fhir/Patient/pat-pat/$everything").json()
    types = {e["resource"]["resourceType"] for e in mine["entry"]}
    assert {"Patient", "CarePlan", "CareTeam", "Observation"} <= types
    assert who["nina"].get("/fhir/Patient/pat-paula/$everything").status_code == 404
    assert who["wes"].get("/fhir/Patient/pat-pat/$everything").status_code == 404
    r = who["nina"].get("/fhir/Patient/pat-paula/Observation")
    assert r.status_code == 200 and r.json()["total"] == 0
    # IG lead: demographics and consents, never clinical content, even through $everything
    ev = who["iris"].get("/fhir/Patient/pat-pat/$everything")
    assert ev.status_code in (200, 403)
    if ev.status_code == 200:
        assert {e["resource"]["resourceType"] for e in ev.json().get("entry", [])} <= {
            "Patient", "Consent", "Provenance", "AuditEvent", "Organization", "Practitioner", "PractitionerRole",
            "OperationOutcome"}


def test_history_shows_only_what_the_caller_may_see(who):
    obs = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "secret")).json()
    assert who["ada"].delete(f"/fhir/Observation/{obs['id']}").status_code == 204
    for url in ("/fhir/_history?_count=1000", "/fhir/Observation/_history?_count=1000"):
        body = who["nina"].get(url).json()
        for e in body.get("entry", []):
            assert obs["id"] not in e["fullUrl"], (url, e)
            if "resource" in e:
                assert "pat-paula" not in str(e["resource"]), url
    assert who["nina"].get(f"/fhir/Observation/{obs['id']}/_history").status_code == 404
    assert who["gary"].get(f"/fhir/Observation/{obs['id']}/_history").status_code == 200


def test_batches_and_transactions_apply_the_policy_to_every_entry(who):
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/pat-pat"}},
        {"request": {"method": "GET", "url": "Patient/pat-paula"}},
        {"request": {"method": "GET", "url": "Patient?_total=accurate"}}]}
    r = who["nina"].post("/fhir", json=batch)
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("200") and statuses[1].startswith("404") and statuses[2].startswith("200")
    assert r.json()["entry"][2]["resource"]["total"] == 1
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": observation("pat-pat", "ok")},
        {"request": {"method": "POST", "url": "Observation"}, "resource": observation("pat-paula", "not hers")}]}
    r = who["nina"].post("/fhir", json=tx)
    assert r.status_code == 403, r.text
    assert who["ada"].get("/fhir/Observation?_summary=count").json()["total"] == 0  # all or nothing


def test_professionals_write_only_within_their_relationships_and_authorship_is_stamped(who):
    forged = observation("pat-pat", "BP 120/80", org="org-acute-trust")
    r = who["nina"].post("/fhir/Observation", json=forged)
    assert r.status_code == 201, r.text
    assert r.json()["extension"] == [{"url": by("x")[0]["url"], "valueReference": {
        "reference": "Organization/org-community-trust",
        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RYX"}}}]
    r = who["wes"].post("/fhir/Observation", json=observation("pat-pat", "BP"))
    assert r.status_code == 403 and "care relationship" in r.json()["issue"][0]["diagnostics"]
    # an update by another organisation adds it to the authors; the first stays first
    obs = who["nina"].get(f"/fhir/Observation/{who['nina'].post('/fhir/Observation', json=observation('pat-pat', 'x')).json()['id']}").json()
    obs["valueString"] = "corrected"
    r = who["sam"].put(f"/fhir/Observation/{obs['id']}", json=obs)
    assert r.status_code == 200, r.text
    refs = [e["valueReference"]["reference"] for e in r.json()["extension"]]
    assert refs == ["Organization/org-community-trust", "Organization/org-council-asc"]


def test_patients_and_proxies_stay_in_their_lane(who):
    assert who["pat"].get("/fhir/Observation?subject=Patient/pat-paula").json()["total"] == 0
    assert who["pat"].get("/fhir/Patient/pat-paula/$everything").status_code in (403, 404)
    assert who["carl"].post("/fhir/Observation", json=observation("pat-pat", "x")).status_code == 403
    assert who["paula"].get("/fhir/CareTeam/careteam-pat").status_code == 404


def test_the_audit_trail_is_for_ig_leads_and_patients_see_who_looked(who):
    who["nina"].get("/fhir/Patient/pat-pat")
    assert who["nina"].get("/fhir/AuditEvent").status_code == 403
    assert who["gp"].get("/fhir/AuditEvent").status_code == 403
    assert who["iris"].get("/fhir/AuditEvent?patient=Patient/pat-pat").json()["total"] >= 1
    assert who["iris"].get("/fhir/CarePlan").status_code == 403
    assert who["iris"].get("/fhir/Consent").status_code == 200
    log = who["pat"].get("/fhir/Patient/pat-pat/$access-log")
    assert log.status_code == 200 and "Nina" in log.text
    assert who["pat"].get("/fhir/Patient/pat-paula/$access-log").status_code in (403, 404)
    assert who["nina"].get("/fhir/Patient/pat-pat/$access-log").status_code == 403
    assert who["pat"].get("/fhir/AuditEvent").status_code == 403


def test_conditional_interactions_never_reveal_a_hidden_match(who):
    nhs = f"identifier=https://fhir.nhs.uk/Id/nhs-number|{PAT_NHS}"
    pat = {"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                      "value": PAT_NHS}], "name": [{"family": "Dup"}]}
    # only what wes may see matches: for him there is no match, so he would create a second Pat, which the NHS
    # number's uniqueness refuses (409, saying only that a record with that number exists); deleting "the match"
    # deletes nothing (204, as for criteria that match nothing)
    answers = [who["wes"].post("/fhir/Patient", json=pat, headers={"If-None-Exist": nhs}),
               who["wes"].put(f"/fhir/Patient?{nhs}", json=pat)]
    for r in answers:
        assert r.status_code == 409, r.text
        assert "pat-pat" not in r.text and "Example" not in r.text and "NHS number 943 476 5919" in r.text
    assert who["wes"].delete(f"/fhir/Patient?{nhs}").status_code == 204
    assert who["ada"].get("/fhir/Patient?_summary=count").json()["total"] == 2
    assert who["ada"].get("/fhir/Patient/pat-pat").json()["name"][0]["family"] == "Example"
    # someone who may see it gets the ordinary answer
    r = who["gary"].post("/fhir/Patient", json=pat, headers={"If-None-Exist": nhs})
    assert r.status_code == 200 and r.json()["id"] == "pat-pat"


def test_a_write_only_scope_changes_what_it_cannot_read(who, auth_headers, client):
    from tests.workflows.support import As

    made = who["nina"].post("/fhir/Observation", json=observation("pat-pat", "x")).json()
    made["valueString"] = "corrected"
    writer = As(client, auth_headers("nurse.nina", scope="user/Observation.u user/Observation.d"))
    assert writer.get(f"/fhir/Observation/{made['id']}").status_code == 403
    assert writer.put(f"/fhir/Observation/{made['id']}", json=made).status_code == 200
    assert writer.delete(f"/fhir/Observation/{made['id']}").status_code == 204
    # but not outside the care relationship
    other = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "y")).json()
    assert writer.delete(f"/fhir/Observation/{other['id']}").status_code == 204  # as for an unknown id ...
    assert who["ada"].get(f"/fhir/Observation/{other['id']}").status_code == 200  # ... and nothing was deleted
