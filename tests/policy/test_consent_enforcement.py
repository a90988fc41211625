"""The person's consents, enforced through the API: objections to organisations and to kinds of data, their
withdrawal, proxy grants, NOPAT and restricted labels, and the Consent write rules. Both databases."""

from __future__ import annotations

from tests.policy.support import ACT_CODE, CONF, actor, consent, ids, observation, outcomes

COUNCIL = "Organization/org-council-asc"


def _object_to_council(who) -> dict:  # type: ignore[no-untyped-def]
    body = consent("pat-pat", {"type": "permit", "provision": [{"type": "deny", "actor": [actor(COUNCIL)]}]})
    r = who["pat"].post("/fhir/Consent", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_an_objection_to_one_organisation_withholds_from_it_only_and_is_withdrawn_by_an_update(who):
    gp_obs = who["ada"].post("/fhir/Observation", json=observation("pat-pat", "HbA1c 48")).json()
    council_note = who["sam"].post("/fhir/Observation", json=observation("pat-pat", "Home visit")).json()
    assert who["sam"].get(f"/fhir/Observation/{gp_obs['id']}").status_code == 200
    c = _object_to_council(who)
    # the council loses what others wrote, keeps what it wrote; others are unaffected
    r = who["sam"].get(f"/fhir/Observation/{gp_obs['id']}")
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "suppressed"
    assert who["sam"].get("/fhir/CarePlan/careplan-pat-1").status_code == 403
    assert who["sam"].get(f"/fhir/Observation/{council_note['id']}").status_code == 200
    assert who["nina"].get(f"/fhir/Observation/{gp_obs['id']}").status_code == 200
    # search: filtered in the query (total and entries agree) with a suppressed note
    body = who["sam"].get("/fhir/Observation?subject=Patient/pat-pat&_total=accurate").json()
    assert ids(body) == [council_note["id"]] and body["total"] == 1
    assert any(i["code"] == "suppressed" for i in outcomes(body))
    assert who["nina"].get("/fhir/Observation?subject=Patient/pat-pat").json()["total"] == 2
    # withdrawing is an update; deleting is refused
    assert who["pat"].delete(f"/fhir/Consent/{c['id']}").status_code == 403  # her scopes: c, r, u
    r = who["nina"].delete(f"/fhir/Consent/{c['id']}")
    assert r.status_code == 405 and "inactive" in r.json()["issue"][0]["diagnostics"]
    c["status"] = "inactive"
    assert who["pat"].put(f"/fhir/Consent/{c['id']}", json=c).status_code == 200
    assert who["sam"].get(f"/fhir/Observation/{gp_obs['id']}").status_code == 200
    history = who["pat"].get(f"/fhir/Consent/{c['id']}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["inactive", "active"]


def test_an_objection_to_a_kind_of_data_hides_it_from_other_organisations(who):
    psy = observation("pat-pat", "Low mood", labels=((ACT_CODE, "PSY"),))
    hidden = who["ada"].post("/fhir/Observation", json=psy).json()
    plain = who["ada"].post("/fhir/Observation", json=observation("pat-pat", "BP")).json()
    body = consent("pat-pat", {"type": "permit", "provision": [{"type": "deny", "securityLabel": [
        {"system": ACT_CODE, "code": "PSY"}]}]})
    assert who["pat"].post("/fhir/Consent", json=body).status_code == 201
    assert who["nina"].get(f"/fhir/Observation/{hidden['id']}").status_code == 403
    assert who["nina"].get(f"/fhir/Observation/{plain['id']}").status_code == 200
    assert who["gary"].get(f"/fhir/Observation/{hidden['id']}").status_code == 200  # the GP wrote it
    found = who["nina"].get("/fhir/Patient/pat-pat/$everything").json()
    assert hidden["id"] not in str(found) and plain["id"] in str(found)
    assert who["nina"].get("/fhir/Observation?_security=PSY").json()["total"] == 0


def test_an_objection_to_all_sharing_keeps_each_organisations_own_records(who):
    own = who["nina"].post("/fhir/Observation", json=observation("pat-pat", "Dressing changed")).json()
    gp = who["ada"].post("/fhir/Observation", json=observation("pat-pat", "Diabetes review")).json()
    assert who["pat"].post("/fhir/Consent", json=consent("pat-pat", {"type": "deny"})).status_code == 201
    assert who["nina"].get(f"/fhir/Observation/{own['id']}").status_code == 200
    assert who["nina"].get(f"/fhir/Observation/{gp['id']}").status_code == 403
    assert who["gary"].get(f"/fhir/Observation/{gp['id']}").status_code == 200
    assert ids(who["nina"].get("/fhir/Observation").json()) == [own["id"]]
    assert who["pat"].get(f"/fhir/Observation/{gp['id']}").status_code == 200  # her own record, always


def test_the_most_recent_consent_decides(who):
    gp = who["ada"].post("/fhir/Observation", json=observation("pat-pat", "x")).json()
    old = consent("pat-pat", {"type": "deny"}, when="2026-10-01T09:00:00Z")
    new = consent("pat-pat", {"type": "permit"}, rule="OPTIN", when="2026-11-01T09:00:00Z")
    assert who["pat"].post("/fhir/Consent", json=old).status_code == 201
    assert who["nina"].get(f"/fhir/Observation/{gp['id']}").status_code == 403
    assert who["pat"].post("/fhir/Consent", json=new).status_code == 201
    assert who["nina"].get(f"/fhir/Observation/{gp['id']}").status_code == 200


def test_nopat_is_never_shown_to_the_patient_or_a_proxy(who):
    note = who["ada"].post("/fhir/Observation", json=observation(
        "pat-pat", "Safeguarding concern", labels=((ACT_CODE, "NOPAT"),))).json()
    assert who["nina"].get(f"/fhir/Observation/{note['id']}").status_code == 200
    assert who["pat"].get(f"/fhir/Observation/{note['id']}").status_code == 404
    assert who["carl"].get(f"/fhir/Observation/{note['id']}").status_code == 404
    assert note["id"] not in str(who["pat"].get("/fhir/Patient/pat-pat/$everything").json())
    assert who["pat"].get("/fhir/Observation").json()["total"] == 0


def test_restricted_records_stay_with_their_authors(who):
    v = who["ada"].post("/fhir/Observation", json=observation("pat-pat", "HIV status", labels=((CONF, "V"),))).json()
    assert who["gary"].get(f"/fhir/Observation/{v['id']}").status_code == 200
    assert who["nina"].get(f"/fhir/Observation/{v['id']}").status_code == 403
    assert who["pat"].get(f"/fhir/Observation/{v['id']}").status_code == 200
    assert who["nina"].get("/fhir/Observation").json()["total"] == 0


def test_a_proxy_sees_what_was_granted_and_records_consents_only_with_authority(who):
    assert who["carl"].get("/fhir/CarePlan/careplan-pat-1").status_code == 200
    grant = who["pat"].get("/fhir/Consent/consent-pat-carl").json()
    grant["status"] = "inactive"
    assert who["pat"].put("/fhir/Consent/consent-pat-carl", json=grant).status_code == 200
    assert who["carl"].get("/fhir/CarePlan/careplan-pat-1").status_code == 404
    body = consent("pat-pat", {"type": "deny"})
    assert who["carl"].post("/fhir/Consent", json=body).status_code == 403
    carl = who["ada"].get("/fhir/RelatedPerson/rp-carl").json()
    carl["relationship"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                         "code": "HPOWATT"}]}]
    assert who["ada"].put("/fhir/RelatedPerson/rp-carl", json=carl).status_code == 200
    r = who["carl"].post("/fhir/Consent", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["performer"] == [{"reference": "RelatedPerson/rp-carl"}]


def test_a_professional_records_a_persons_wishes_with_their_source(who):
    body = consent("pat-pat", {"type": "permit", "provision": [{"type": "deny", "actor": [actor(COUNCIL)]}]})
    r = who["nina"].post("/fhir/Consent", json=body)
    assert r.status_code == 422
    text = str(r.json())
    assert "Consent.performer" in text and "Consent.source[x]" in text
    body.update(performer=[{"reference": "Patient/pat-pat"}],
                sourceAttachment={"title": "Conversation at home visit, 2026-11-01"})
    r = who["nina"].post("/fhir/Consent", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["organization"][0]["reference"] == "Organization/org-community-trust"
    # the actor is stored with its ODS code beside the reference (matched either way)
    assert r.json()["provision"]["provision"][0]["actor"][0]["reference"]["identifier"]["value"] == "E10000019"
    assert who["wes"].post("/fhir/Consent", json=body).status_code == 403  # no care relationship


def test_malformed_consents_are_refused_naming_the_problem(who):
    cases = {
        "Consent.patient": {**consent("pat-pat", {"type": "deny"}), "patient": None},
        "Consent.policyRule": {**consent("pat-pat", {"type": "deny"}), "policyRule": None},
        "Consent.provision.type": consent("pat-pat", {"actor": [actor(COUNCIL)]}),
        "Consent.provision.provision[0].securityLabel[0]": consent("pat-pat", {"type": "permit", "provision": [
            {"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": "PSYCHO"}]}]}),
        "Consent.provision.provision[0].actor[0].reference": consent("pat-pat", {"type": "permit", "provision": [
            {"type": "deny", "actor": [actor("Organization/no-such-org")]}]}),
        "Consent.policyRule.coding[0].code": consent("pat-pat", {"type": "deny"}, rule="OPTMAYBE"),
    }
    for path, body in cases.items():
        body = {k: v for k, v in body.items() if v is not None}
        r = who["pat" if "patient" in body else "ada"].post("/fhir/Consent", json=body)
        assert r.status_code in (400, 422), (path, r.text)
        assert path in str(r.json()), (path, r.text)
    assert who["ada"].get("/fhir/Consent?_summary=count").json()["total"] == 1  # only the demo grant
