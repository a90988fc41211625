"""FHIR search over HTTP on SQLite and PostgreSQL: parameter types, modifiers, chains, paging, includes."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

NHS = "https://fhir.nhs.uk/Id/nhs-number"
R_LABEL = ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")


def post(client, res):  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return r.json()


def ids(body) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]


def get(client, url, status=200, **kw):  # type: ignore[no-untyped-def]
    r = client.get("/fhir/" + url, **kw)
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture
def world(client):  # type: ignore[no-untyped-def]
    org = post(client, {"resourceType": "Organization", "name": "Riverside GP",
                        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A81001"}]})
    ann = post(client, {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}],
                        "name": [{"family": "Ñúñez", "given": ["Ann"]}], "gender": "female",
                        "birthDate": "1950-03-04", "managingOrganization": {"reference": f"Organization/{org['id']}"},
                        "meta": {"tag": [{"system": "urn:t", "code": "demo"}],
                                 "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"],
                                 "source": "urn:src:gp"}})
    bob = post(client, {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765870"}],
                        "name": [{"family": "Smith", "given": ["Bob"]}], "gender": "male", "birthDate": "1980",
                        "meta": {"security": [{"system": R_LABEL[0], "code": R_LABEL[1]}]}})
    plans = [post(client, {"resourceType": "CarePlan", "status": st, "intent": "plan",
                           "subject": {"reference": f"Patient/{p['id']}"},
                           "period": {k: v for k, v in (("start", start), ("end", end)) if v}})  # (no null: ele-1)
             for p, st, start, end in ((ann, "active", "2024-01-01", "2024-06-30"),
                                       (ann, "completed", "2023-01-01", "2023-12-31"),
                                       (bob, "active", "2024-03-01", None))]
    obs = [post(client, {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7",
                                              "display": "Body weight"}], "text": "Weight"},
                         "subject": {"reference": f"Patient/{ann['id']}"}, "effectiveDateTime": eff,
                         "valueQuantity": {"value": v, "unit": "kg", "system": "http://unitsofmeasure.org",
                                           "code": "kg"}})
           for eff, v in (("2024-02-01T10:00:00Z", 70.5), ("2024-05-01T10:00:00Z", 72))]
    return {"org": org, "ann": ann, "bob": bob, "plans": plans, "obs": obs}


def test_string_defaults_to_accent_and_case_insensitive_prefix(client, world):  # type: ignore[no-untyped-def]
    ann = world["ann"]["id"]
    assert ids(get(client, "Patient?name=nun")) == [ann]
    assert ids(get(client, "Patient?family=NUÑ")) == [ann]
    assert ids(get(client, "Patient?name=unez")) == []
    assert ids(get(client, "Patient?name:contains=UNE")) == [ann]
    assert ids(get(client, "Patient?family:exact=Ñúñez")) == [ann]
    assert ids(get(client, "Patient?family:exact=nunez")) == []


def test_token_forms_and_modifiers(client, world):  # type: ignore[no-untyped-def]
    ann, bob = world["ann"]["id"], world["bob"]["id"]
    assert ids(get(client, f"Patient?identifier={NHS}|9434765919")) == [ann]
    assert ids(get(client, "Patient?identifier=9434765919")) == [ann]
    assert ids(get(client, "Patient?identifier=|9434765919")) == []
    assert sorted(ids(get(client, f"Patient?identifier={NHS}|"))) == sorted([ann, bob])
    assert ids(get(client, "Patient?gender:not=female")) == [bob]
    assert ids(get(client, "Observation?code:text=body")) and ids(get(client, "Observation?code:text=weig"))
    assert len(ids(get(client, "Observation?code=http://loinc.org|29463-7"))) == 2
    assert ids(get(client, "Patient?gender:missing=true")) == []
    assert sorted(ids(get(client, "Patient?gender:missing=false"))) == sorted([ann, bob])


def test_comma_is_or_and_repetition_is_and(client, world):  # type: ignore[no-untyped-def]
    ann, bob = world["ann"]["id"], world["bob"]["id"]
    assert sorted(ids(get(client, "Patient?gender=female,male"))) == sorted([ann, bob])
    assert ids(get(client, "Patient?gender=female&name=nun")) == [ann]
    assert ids(get(client, "Patient?name=nun&name=smi")) == []


def test_reference_forms(client, world):  # type: ignore[no-untyped-def]
    ann = world["ann"]["id"]
    expected = sorted(p["id"] for p in world["plans"][:2])
    assert sorted(ids(get(client, f"CarePlan?subject=Patient/{ann}"))) == expected
    assert sorted(ids(get(client, f"CarePlan?subject={ann}"))) == expected
    assert sorted(ids(get(client, f"CarePlan?subject:Patient={ann}"))) == expected
    assert sorted(ids(get(client, f"CarePlan?subject=http://testserver/fhir/Patient/{ann}"))) == expected
    assert sorted(ids(get(client, f"CarePlan?patient={ann}&status=active"))) == [world["plans"][0]["id"]]
    assert ids(get(client, f"CarePlan?subject:Group={ann}")) == []


def test_dates_match_as_ranges_with_prefixes(client, world):  # type: ignore[no-untyped-def]
    ann, bob = world["ann"]["id"], world["bob"]["id"]
    assert ids(get(client, "Patient?birthdate=1950")) == [ann]
    assert ids(get(client, "Patient?birthdate=1950-03-04")) == [ann]
    assert ids(get(client, "Patient?birthdate=1980-06")) == []  # 1980 is wider than June 1980
    assert ids(get(client, "Patient?birthdate=1980")) == [bob]
    assert ids(get(client, "Patient?birthdate=lt1960")) == [ann]
    assert ids(get(client, "Patient?birthdate=ge1980-01-01")) == [bob]
    assert ids(get(client, "Patient?birthdate=ne1950")) == [bob]
    p0, p1, p2 = (p["id"] for p in world["plans"])
    assert sorted(ids(get(client, "CarePlan?date=ge2024-03-01"))) == sorted([p0, p2])  # p2 is open-ended
    assert ids(get(client, "CarePlan?date=eb2024-01-01")) == [p1]
    assert ids(get(client, "CarePlan?date=sa2024-02-01")) == [p2]
    assert ids(get(client, "Observation?date=gt2024-03-01")) == [world["obs"][1]["id"]]
    assert len(ids(get(client, "Observation?date=ap2024-02-01"))) >= 1


def test_quantity_and_number(client, world):  # type: ignore[no-untyped-def]
    o0, o1 = (o["id"] for o in world["obs"])
    assert ids(get(client, "Observation?value-quantity=70.5")) == [o0]
    assert ids(get(client, "Observation?value-quantity=70")) == []
    assert ids(get(client, "Observation?value-quantity=gt71|http://unitsofmeasure.org|kg")) == [o1]
    assert ids(get(client, "Observation?value-quantity=lt71||kg")) == [o0]
    assert ids(get(client, "Observation?value-quantity=72|http://unitsofmeasure.org|g")) == []


def test_uri_below_and_above_and_common_parameters(client, world):  # type: ignore[no-untyped-def]
    ann, bob = world["ann"]["id"], world["bob"]["id"]
    assert ids(get(client, "Patient?_profile=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient")) == [ann]
    assert ids(get(client, "Patient?_profile:below=https://fhir.hl7.org.uk/StructureDefinition/")) == [ann]
    assert ids(get(client, "Patient?_profile:above=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient/x")) \
        == [ann]
    assert ids(get(client, "Patient?_tag=urn:t|demo")) == [ann]
    assert ids(get(client, f"Patient?_security={R_LABEL[0]}|{R_LABEL[1]}")) == [bob]
    assert ids(get(client, "Patient?_source=urn:src:gp")) == [ann]
    assert sorted(ids(get(client, f"Patient?_id={ann},{bob}"))) == sorted([ann, bob])
    assert len(ids(get(client, "Patient?_lastUpdated=gt2000-01-01"))) == 2
    assert ids(get(client, "Patient?_lastUpdated=lt2000-01-01")) == []
    body = get(client, f"?_type=Patient,Organization&_id={ann}")
    assert ids(body) == [ann]


def test_chains_and_has(client, world):  # type: ignore[no-untyped-def]
    ann = world["ann"]["id"]
    expected = sorted(p["id"] for p in world["plans"][:2])
    assert sorted(ids(get(client, f"CarePlan?subject:Patient.identifier={NHS}|9434765919"))) == expected
    assert sorted(ids(get(client, "CarePlan?subject.name=nun"))) == expected
    assert sorted(ids(get(client, "CarePlan?subject:Patient.organization.identifier=A81001"))) == expected
    assert ids(get(client, "Patient?_has:CarePlan:subject:status=completed")) == [ann]
    assert ids(get(client, "Patient?_has:Observation:patient:code=29463-7")) == [ann]
    assert ids(get(client, "Organization?_has:Patient:organization:_has:CarePlan:subject:status=completed")) \
        == [world["org"]["id"]]


def test_paging_links_are_keyset_and_signed(client, world):  # type: ignore[no-untyped-def]
    for i in range(5):
        post(client, {"resourceType": "Patient", "name": [{"family": f"Page{i}"}]})
    body = get(client, "Patient?name=page&_count=2")
    assert body["total"] == 5
    seen = ids(body)
    links = {lk["relation"]: lk["url"] for lk in body["link"]}
    assert "previous" not in links
    pages = [seen]
    while "next" in links:
        nxt = links["next"]
        body = client.get(nxt).json()
        pages.append(ids(body))
        links = {lk["relation"]: lk["url"] for lk in body["link"]}
    assert sum(len(p) for p in pages) == 5 and len({i for p in pages for i in p}) == 5
    back = client.get(links["previous"]).json()
    assert ids(back) == pages[-2]
    # editing the cursor, or the query it belongs to, is refused
    q = dict(parse_qsl(urlsplit(links["previous"]).query))
    r = client.get("/fhir/Patient", params={**q, "name": "smi"})
    assert r.status_code == 400 and "paging link" in r.text
    r = client.get("/fhir/Patient", params={**q, "_cursor": q["_cursor"][:-2] + "AA"})
    assert r.status_code == 400


def test_count_total_sort_summary_elements(client, world):  # type: ignore[no-untyped-def]
    body = get(client, "Patient?_count=5000")
    assert body["link"][0]["url"].endswith("_count=1000")
    assert any(e["search"]["mode"] == "outcome" for e in body["entry"])
    assert "total" not in get(client, "Patient?_total=none")
    assert get(client, "Patient?_summary=count") == {"resourceType": "Bundle", "type": "searchset", "total": 2,
                                                     "link": [{"relation": "self", "url":
                                                               "http://testserver/fhir/Patient?_summary=count"}]}
    ann, bob = world["ann"]["id"], world["bob"]["id"]
    assert ids(get(client, "Patient?_sort=birthdate")) == [ann, bob]
    assert ids(get(client, "Patient?_sort=-birthdate")) == [bob, ann]
    assert ids(get(client, "Patient?_sort=family,-_lastUpdated")) == [ann, bob]  # "nunez" < "smith"
    res = get(client, f"Patient?_id={ann}&_elements=gender")["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "gender"} and res["meta"]["tag"][-1]["code"] == "SUBSETTED"
    res = get(client, f"Patient?_id={ann}&_summary=true")["entry"][0]["resource"]
    assert "name" in res and "managingOrganization" in res
    # sorted pages keep their order across the next link
    body = get(client, "Patient?_sort=-birthdate&_count=1")
    nxt = next(lk["url"] for lk in body["link"] if lk["relation"] == "next")
    assert ids(body) + ids(client.get(nxt).json()) == [bob, ann]


def test_include_revinclude_iterate(client, world):  # type: ignore[no-untyped-def]
    ann, org = world["ann"]["id"], world["org"]["id"]
    body = get(client, f"Patient?_id={ann}&_revinclude=CarePlan:subject&_include=Patient:organization")
    modes = sorted((e["search"]["mode"], e["resource"]["resourceType"]) for e in body["entry"])
    assert modes == [("include", "CarePlan"), ("include", "CarePlan"), ("include", "Organization"),
                     ("match", "Patient")]
    assert body["total"] == 1
    body = get(client, "CarePlan?status=completed&_include=CarePlan:subject&_include:iterate=Patient:organization")
    assert {e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "include"} == {ann, org}
    body = get(client, "CarePlan?status=completed&_include=*")
    assert {e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "include"} == {ann}


def test_post_search_equals_get(client, world):  # type: ignore[no-untyped-def]
    a = get(client, "Patient?name=nun&_count=1")
    r = client.post("/fhir/Patient/_search", content="name=nun&_count=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json() == a


def test_compartment_and_everything(client, world):  # type: ignore[no-untyped-def]
    ann = world["ann"]["id"]
    assert sorted(ids(get(client, f"Patient/{ann}/CarePlan"))) == sorted(p["id"] for p in world["plans"][:2])
    assert ids(get(client, f"Patient/{ann}/CarePlan?status=active")) == [world["plans"][0]["id"]]
    types = {e["resource"]["resourceType"] for e in get(client, f"Patient/{ann}/*?_count=100")["entry"]}
    assert {"Patient", "CarePlan", "Observation"} <= types
    assert get(client, f"Patient/{ann}/Organization", 400)
    body = get(client, f"Patient/{ann}/$everything?_type=Patient,CarePlan,Observation&_count=2")
    got = ids(body)
    while nxt := [lk["url"] for lk in body["link"] if lk["relation"] == "next"]:
        body = client.get(nxt[0]).json()
        got += ids(body)
    assert sorted(got) == sorted([ann] + [p["id"] for p in world["plans"][:2]] + [o["id"] for o in world["obs"]])
    body = get(client, f"Patient/{ann}/$everything?_type=Patient")
    assert [(e["search"]["mode"], e["resource"]["resourceType"]) for e in body["entry"]] == [
        ("match", "Patient"), ("include", "Organization")]
    assert get(client, f"Patient/{ann}/$everything?_since=2999-01-01T00:00:00Z")["total"] == 0
    assert get(client, "Patient/nobody/$everything", 404)


def test_unknown_and_invalid_parameters(client, world):  # type: ignore[no-untyped-def]
    body = get(client, "Patient?foo=bar&name=nun", headers={"Prefer": "handling=lenient"})
    assert ids(body) == [world["ann"]["id"]]
    assert body["link"][0]["url"] == "http://testserver/fhir/Patient?name=nun"
    for headers in ({"Prefer": "handling=strict"}, {}):  # strict unless the client asks for lenient
        r = client.get("/fhir/Patient?foo=bar", headers=headers)
        assert r.status_code == 400 and "foo" in r.text
    for q, word in (("Patient?birthdate=2020-13-45", "birthdate"), ("Patient?birthdate=xx2020", "prefix"),
                    ("Patient?name:fuzzy=x", ":fuzzy"), ("Patient?_count=-1", "_count"),
                    ("Patient?_summary=maybe", "_summary"), ("Observation?value-quantity=1.2.3", "number"),
                    ("Patient?gender:missing=maybe", "missing"), ("Patient?_total=some", "_total")):
        r = client.get("/fhir/" + q)
        assert r.status_code == 400 and word in r.text, (q, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


def test_conditional_interactions_use_search(client, world):  # type: ignore[no-untyped-def]
    ann = world["ann"]["id"]
    r = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                    headers={"If-None-Exist": f"identifier={NHS}|9434765919"})
    assert r.status_code == 200 and r.json()["id"] == ann
    r = client.put(f"/fhir/Patient?identifier={NHS}|9434765919",
                   json={"resourceType": "Patient", "gender": "other", "identifier": [{"system": NHS,
                                                                                        "value": "9434765919"}]})
    assert r.status_code == 200 and r.json()["id"] == ann
    assert ids(get(client, "Patient?gender=other")) == [ann]
    assert ids(get(client, "Patient?name=nun")) == []  # the update replaced the name: indexes follow
    r = client.put("/fhir/Patient?gender=female,male", json={"resourceType": "Patient"})
    assert r.status_code in (200, 201, 412)
    r = client.delete("/fhir/Patient?foo=bar")
    assert r.status_code == 400
    r = client.delete(f"/fhir/Patient?identifier={NHS}|9434765870")
    assert r.status_code == 204
    assert ids(get(client, f"Patient?identifier={NHS}|9434765870")) == []


def test_patch_and_transaction_keep_indexes(client, world):  # type: ignore[no-untyped-def]
    bob = world["bob"]["id"]
    r = client.patch(f"/fhir/Patient/{bob}", content=b'[{"op":"replace","path":"/gender","value":"unknown"}]',
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert ids(get(client, "Patient?gender=unknown")) == [bob]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Transact"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "CarePlan", "status": "draft", "intent": "plan",
                      "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}},
         "request": {"method": "POST", "url": "CarePlan"}}]}
    r = client.post("/fhir", json=tx)
    assert r.status_code == 200, r.text
    assert len(ids(get(client, "CarePlan?subject.name=transact&status=draft"))) == 1
