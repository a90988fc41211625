"""Batch and transaction Bundles POSTed to /fhir, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.api.support import FHIR, all_versions, assert_outcome, patient

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MRN = "urn:oid:1.2.3.4"


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(full_url: str | None, resource: dict[str, Any], **request: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"],
                                                           **request}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def put(url: str, resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": "PUT", "url": url, **request}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def req(method: str, url: str, **request: Any) -> dict[str, Any]:
    return {"request": {"method": method, "url": url, **request}}


def patch_entry(url: str, ops: list[dict[str, Any]], **request: Any) -> dict[str, Any]:
    data = base64.b64encode(orjson.dumps(ops)).decode()
    return {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
            "request": {"method": "PATCH", "url": url, **request}}


def obs(subject: str, **extra: Any) -> dict[str, Any]:
    res = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "subject": {"reference": subject}}
    res.update(extra)
    return res


def ident(value: str, system: str = MRN) -> list[dict[str, str]]:
    return [{"system": system, "value": value}]


def run(client: Any, bundle: dict[str, Any], **headers: str) -> Any:
    return client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": FHIR, **headers})


def target(entry: dict[str, Any]) -> str:
    return entry["response"]["location"].split("/fhir/", 1)[1].split("/_history/", 1)[0]


# -- transaction ------------------------------------------------------------------------------------
def test_transaction_creates_everything_and_rewrites_urn_uuid_references(client):
    pat = "urn:uuid:11111111-1111-4111-8111-111111111111"
    enc = "urn:uuid:22222222-2222-4222-8222-222222222222"
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                 "subject": {"reference": pat}}
    observation = obs(pat, encounter={"reference": enc}, extension=[
        {"url": "http://example.org/source-patient", "valueReference": {"reference": pat}},
        {"url": "http://example.org/source-uri", "valueUri": enc},
    ])
    r = run(client, tx(post(None, observation), post(enc, encounter), post(pat, patient())))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "transaction-response"
    entries = body["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 3
    for e in entries:
        assert e["response"]["etag"] == 'W/"1"'
        assert e["response"]["location"].endswith("/_history/1")
        assert e["response"]["lastModified"] == e["resource"]["meta"]["lastUpdated"]
        assert e["fullUrl"] == e["response"]["location"].split("/_history/")[0]
    obs_ref, enc_ref, pat_ref = (target(e) for e in entries)
    assert pat_ref.startswith("Patient/") and enc_ref.startswith("Encounter/")
    stored = client.get(f"/fhir/{obs_ref}").json()
    assert stored["subject"]["reference"] == pat_ref
    assert stored["encounter"]["reference"] == enc_ref
    assert stored["extension"][0]["valueReference"]["reference"] == pat_ref
    assert stored["extension"][1]["valueUri"] == enc_ref
    assert client.get(f"/fhir/{enc_ref}").json()["subject"]["reference"] == pat_ref
    assert "urn:uuid" not in client.get("/fhir/_history").text


def test_transaction_is_all_or_nothing(client):
    before = all_versions(client)
    bad = patient(birthDate="not-a-date")
    r = run(client, tx(post("urn:uuid:a", patient()), post("urn:uuid:b", bad), post(None, obs("urn:uuid:a"))))
    body = assert_outcome(r, 422, "Bundle.entry[1]", "Patient.birthDate")
    assert any(i.get("expression") == ["Patient.birthDate"] for i in body["issue"])
    assert all_versions(client) == before == []


def test_transaction_failure_late_in_the_order_rolls_back_earlier_deletes_and_creates(client):
    keep = client.put("/fhir/Patient/keep-me", json=patient(id="keep-me")).json()
    before = all_versions(client)
    r = run(client, tx(req("DELETE", "Patient/keep-me"), post(None, patient()),
                       req("GET", "Patient/does-not-exist")))
    assert_outcome(r, 404, "Bundle.entry[2]", "GET Patient/does-not-exist")
    assert all_versions(client) == before
    assert client.get("/fhir/Patient/keep-me").json() == keep


def test_transaction_processes_delete_post_put_get_in_that_order(client):
    client.put("/fhir/Patient/a", json=patient(id="a"))
    client.put("/fhir/Patient/b", json=patient(id="b"))
    bundle = tx(
        req("GET", "Patient/a"),
        put("Patient/a", patient(id="a", gender="male")),
        post("urn:uuid:new", patient(gender="other")),
        req("DELETE", "Patient/b"),
        req("GET", "Patient?identifier=" + MRN + "|x1"),
        post(None, patient(identifier=ident("x1"))),
    )
    r = run(client, bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    # Response entries keep the request's order; the GETs ran after every write.
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["resource"]["gender"] == "male" and entries[0]["resource"]["meta"]["versionId"] == "2"
    assert entries[1]["response"]["status"] == "200 OK" and entries[1]["response"]["etag"] == 'W/"2"'
    assert entries[2]["response"]["status"] == "201 Created"
    assert entries[3]["response"]["status"] == "204 No Content"
    search = entries[4]["resource"]
    assert search["resourceType"] == "Bundle" and search["type"] == "searchset"
    assert len(search["entry"]) == 1 and search["entry"][0]["resource"]["identifier"] == ident("x1")
    assert client.get("/fhir/Patient/b").status_code == 410


def test_if_none_exist_in_a_transaction_reuses_the_match_and_rewrites_references_to_it(client):
    existing = client.post("/fhir/Patient", json=patient(identifier=ident("p1"))).json()
    r = run(client, tx(post("urn:uuid:p", patient(identifier=ident("p1")), ifNoneExist=f"identifier={MRN}|p1"),
                       post(None, obs("urn:uuid:p"))))
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"] == "200 OK"
    assert target(first) == f"Patient/{existing['id']}"
    observation = client.get(f"/fhir/{target(second)}").json()
    assert observation["subject"]["reference"] == f"Patient/{existing['id']}"
    assert len([k for k, _ in all_versions(client) if k.startswith("Patient/")]) == 1


def test_if_none_exist_twice_in_one_transaction_creates_one_resource(client):
    cond = f"identifier={MRN}|twice"
    r = run(client, tx(post("urn:uuid:1", patient(identifier=ident("twice")), ifNoneExist=cond),
                       post("urn:uuid:2", patient(identifier=ident("twice")), ifNoneExist=cond),
                       post(None, obs("urn:uuid:2"))))
    assert r.status_code == 200, r.text
    e1, e2, e3 = r.json()["entry"]
    assert e1["response"]["status"] == "201 Created" and e2["response"]["status"] == "200 OK"
    assert target(e1) == target(e2)
    assert client.get(f"/fhir/{target(e3)}").json()["subject"]["reference"] == target(e1)


def test_if_none_exist_matching_several_fails_the_transaction_with_412(client):
    client.post("/fhir/Patient", json=patient(identifier=ident("dup")))
    client.post("/fhir/Patient", json=patient(identifier=ident("dup")))
    before = all_versions(client)
    r = run(client, tx(post(None, obs("Patient/x")),
                       post(None, patient(identifier=ident("dup")), ifNoneExist=f"identifier={MRN}|dup")))
    assert_outcome(r, 412, "Bundle.entry[1]", "matched 2")
    assert all_versions(client) == before


def test_conditional_references_resolve_to_the_one_match(client):
    org = client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "GP",
                                                  "identifier": ident("ods1", "https://example.org/ods")}).json()
    pat = {**patient(identifier=ident("c1")),
           "managingOrganization": {"reference": "Organization?identifier=https://example.org/ods|ods1"}}
    r = run(client, tx(post("urn:uuid:p", pat),
                       post(None, obs("Patient?identifier=" + MRN + "|c1"))))  # resolves to the entry above
    assert r.status_code == 200, r.text
    p_entry, o_entry = r.json()["entry"]
    assert p_entry["resource"]["managingOrganization"]["reference"] == f"Organization/{org['id']}"
    assert o_entry["resource"]["subject"]["reference"] == target(p_entry)


def test_conditional_reference_matching_nothing_fails_with_412_naming_it(client):
    r = run(client, tx(post(None, patient()), post(None, obs("Patient?identifier=" + MRN + "|nobody"))))
    assert_outcome(r, 412, "Bundle.entry[1]", "Patient?identifier=", "matched 0")
    assert all_versions(client) == []


def test_unresolvable_urn_uuid_reference_is_refused(client):
    r = run(client, tx(post(None, obs("urn:uuid:99999999-0000-4000-8000-000000000000"))))
    assert_outcome(r, 400, "Bundle.entry[0]", "urn:uuid:99999999")
    assert all_versions(client) == []


def test_absolute_full_urls_on_our_base_are_rewritten(client):
    full = "http://testserver/fhir/Patient/temp-1"
    r = run(client, tx(put("Patient/given-1", patient(id="given-1"), full_url="http://testserver/fhir/Patient/given-1"),
                       post(full, patient()),
                       post(None, obs(full, performer=[{"reference": "http://testserver/fhir/Patient/given-1"}]))))
    assert r.status_code == 200, r.text
    put_e, post_e, obs_e = r.json()["entry"]
    assert put_e["response"]["status"] == "201 Created"
    created = target(post_e)
    assert created != "Patient/temp-1"
    observation = obs_e["resource"]
    assert observation["subject"]["reference"] == created
    assert observation["performer"][0]["reference"] == "Patient/given-1"


def test_conditional_put_in_a_transaction_updates_the_match_or_creates(client):
    existing = client.post("/fhir/Patient", json=patient(identifier=ident("u1"))).json()
    r = run(client, tx(
        put(f"Patient?identifier={MRN}|u1", patient(identifier=ident("u1"), gender="male"), full_url="urn:uuid:a"),
        put(f"Patient?identifier={MRN}|u2", patient(identifier=ident("u2")), full_url="urn:uuid:b"),
        post(None, obs("urn:uuid:b", performer=[{"reference": "urn:uuid:a"}]))))
    assert r.status_code == 200, r.text
    upd, new, observation = r.json()["entry"]
    assert upd["response"]["status"] == "200 OK" and target(upd) == f"Patient/{existing['id']}"
    assert upd["resource"]["gender"] == "male"
    assert new["response"]["status"] == "201 Created"
    assert observation["resource"]["subject"]["reference"] == target(new)
    assert observation["resource"]["performer"][0]["reference"] == target(upd)


def test_if_match_in_a_transaction_entry(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    before = all_versions(client)
    stale = run(client, tx(put(f"Patient/{rid}", patient(id=rid, gender="other"), ifMatch='W/"1"')))
    assert_outcome(stale, 412, "Bundle.entry[0]", "version 2")
    assert all_versions(client) == before
    ok = run(client, tx(put(f"Patient/{rid}", patient(id=rid, gender="other"), ifMatch='W/"2"')))
    assert ok.status_code == 200 and ok.json()["entry"][0]["response"]["etag"] == 'W/"3"'


def test_patch_entry_with_a_binary_json_patch(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = run(client, tx(post("urn:uuid:org", {"resourceType": "Organization", "name": "Council"}),
                       patch_entry(f"Patient/{rid}", [
                           {"op": "replace", "path": "/gender", "value": "male"},
                           {"op": "add", "path": "/managingOrganization", "value": {"reference": "urn:uuid:org"}}])))
    assert r.status_code == 200, r.text
    org_e, patch_e = r.json()["entry"]
    assert patch_e["response"]["status"] == "200 OK" and patch_e["response"]["etag"] == 'W/"2"'
    stored = client.get(f"/fhir/Patient/{rid}").json()
    assert stored["gender"] == "male"
    assert stored["managingOrganization"]["reference"] == target(org_e)


def test_patch_entry_that_is_not_a_binary_json_patch_is_refused(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = run(client, tx({"resource": patient(), "request": {"method": "PATCH", "url": f"Patient/{rid}"}}))
    assert_outcome(r, 400, "Bundle.entry[0]", "Binary")
    bad = patch_entry(f"Patient/{rid}", [])
    bad["resource"]["contentType"] = "application/xml"
    assert_outcome(run(client, tx(bad)), 415, "Bundle.entry[0]", "application/xml")


def test_one_resource_changed_twice_in_a_transaction_is_refused(client):
    client.put("/fhir/Patient/twice", json=patient(id="twice"))
    r = run(client, tx(put("Patient/twice", patient(id="twice", gender="male")), req("DELETE", "Patient/twice")))
    assert_outcome(r, 400, "Patient/twice", "only once")


def test_duplicate_full_urls_are_refused(client):
    r = run(client, tx(post("urn:uuid:same", patient()), post("urn:uuid:same", patient())))
    assert_outcome(r, 400, "fullUrl", "urn:uuid:same")
    assert all_versions(client) == []


def test_prefer_minimal_and_operation_outcome_in_bundle_responses(client):
    minimal = run(client, tx(post(None, patient())), Prefer="return=minimal").json()["entry"][0]
    assert "resource" not in minimal and minimal["response"]["status"] == "201 Created"
    assert minimal["response"]["etag"] == 'W/"1"' and "lastModified" in minimal["response"]
    oo = run(client, tx(post(None, patient())), Prefer="return=OperationOutcome").json()["entry"][0]
    assert "resource" not in oo
    assert oo["response"]["outcome"]["resourceType"] == "OperationOutcome"


def test_bundles_that_are_not_transaction_or_batch_are_refused(client):
    assert_outcome(run(client, {"resourceType": "Bundle", "type": "collection", "entry": []}), 400, "collection")
    assert_outcome(client.post("/fhir", json=patient()), 400, "Patient")
    assert_outcome(client.post("/fhir", content=b"{not json", headers={"Content-Type": FHIR}), 400, "JSON")
    missing = run(client, tx({"resource": patient()}))
    assert_outcome(missing, 400, "Bundle.entry[0].request")
    nested = run(client, tx({"resource": tx(), "request": {"method": "POST", "url": ""}}))
    assert_outcome(nested, 400, "Bundle.entry[0]")
    elsewhere = run(client, tx(post(None, patient()) | {"request": {"method": "POST",
                                                                     "url": "http://other.example/fhir/Patient"}}))
    assert_outcome(elsewhere, 400, "not on this server")
    assert all_versions(client) == []


def test_empty_transaction_gives_an_empty_response(client):
    r = run(client, tx())
    assert r.status_code == 200 and r.json()["type"] == "transaction-response" and r.json()["entry"] == []


def test_unknown_type_and_wrong_method_in_entries(client):
    assert_outcome(run(client, tx(post(None, {"resourceType": "Nonsense"}))), 404, "Nonsense")
    assert_outcome(run(client, tx(req("PATCH", "Patient"))), 400, "no resource")


# -- batch ------------------------------------------------------------------------------------------
def test_batch_entries_succeed_or_fail_independently(client):
    client.put("/fhir/Patient/b1", json=patient(id="b1"))
    client.put("/fhir/Patient/b1", json=patient(id="b1", gender="male"))
    r = run(client, tx(
        post(None, patient(identifier=ident("batch-ok"))),
        post(None, patient(birthDate="not-a-date")),
        put("Patient/b1", patient(id="b1", gender="other"), ifMatch='W/"1"'),
        req("GET", "Patient/nobody"),
        req("DELETE", "Patient/b1"),
        {"request": {"method": "TRACE", "url": "Patient"}},
        post(None, obs("urn:uuid:elsewhere")),
        kind="batch"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"][:3] for e in body["entry"]]
    assert statuses == ["201", "422", "412", "404", "204", "400", "400"]
    for e in body["entry"][1:4] + body["entry"][5:]:
        outcome = e["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
    assert "Patient.birthDate" in body["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/b1").status_code == 410
    kinds = [k for k, _ in all_versions(client)]
    assert len([k for k in kinds if k.startswith("Observation/")]) == 0
    assert len([k for k in kinds if k.startswith("Patient/") and k != "Patient/b1"]) == 1


def test_batch_failed_entry_leaves_nothing_behind_and_others_commit(client):
    client.post("/fhir/Patient", json=patient(identifier=ident("two")))
    client.post("/fhir/Patient", json=patient(identifier=ident("two")))
    before = all_versions(client)
    r = run(client, tx(post(None, patient(identifier=ident("new"))),
                       post(None, patient(identifier=ident("two")), ifNoneExist=f"identifier={MRN}|two"),
                       put(f"Patient?identifier={MRN}|two", patient(identifier=ident("two"))),
                       kind="batch"))
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "412", "412"]
    after = all_versions(client)
    assert len(after) == len(before) + 1


def test_batch_conditional_patch_entry(client):
    rid = client.post("/fhir/Patient", json=patient(identifier=ident("cp"))).json()["id"]
    r = run(client, tx(patch_entry(f"Patient?identifier={MRN}|cp", [{"op": "replace", "path": "/gender",
                                                                      "value": "male"}]),
                       patch_entry(f"Patient?identifier={MRN}|none", [{"op": "replace", "path": "/gender",
                                                                        "value": "male"}]),
                       kind="batch"))
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["200", "404"]
    assert client.get(f"/fhir/Patient/{rid}").json()["gender"] == "male"


def test_transaction_order_is_delete_post_put_patch_get_whatever_the_bundle_order(client):
    """Entries written in the reverse of the processing order: what each entry sees, and the order the
    versions were written in (the system history), show DELETE, then POST, then PUT/PATCH, then GET."""
    client.put("/fhir/Patient/ord-a", json=patient(id="ord-a"))
    client.put("/fhir/Patient/ord-c", json=patient(id="ord-c", identifier=ident("ord-c")))
    r = run(client, tx(
        req("GET", f"Patient?identifier={MRN}|ord-c"),
        req("GET", "Patient/ord-a"),
        patch_entry("Patient/ord-a", [{"op": "replace", "path": "/gender", "value": "male"}]),
        put("Patient/ord-b", patient(id="ord-b", link=[{"other": {"reference": "urn:uuid:new"}, "type": "seealso"}])),
        # matches ord-c only if it ran before the DELETE below
        post("urn:uuid:new", patient(identifier=ident("ord-c")), ifNoneExist=f"identifier={MRN}|ord-c"),
        req("DELETE", "Patient/ord-c"),
    ))
    assert r.status_code == 200, r.text
    search, read, patched, put_b, created, deleted = r.json()["entry"]
    assert patched["response"]["status"] == "200 OK" and patched["response"]["etag"] == 'W/"2"'
    assert created["response"]["status"] == "201 Created"  # the DELETE ran first: ord-c no longer matched
    new_id = target(created)
    assert new_id != "Patient/ord-c"
    assert deleted["response"]["status"] == "204 No Content"
    assert put_b["resource"]["link"][0]["other"]["reference"] == new_id
    assert read["resource"]["gender"] == "male" and read["resource"]["meta"]["versionId"] == "2"  # after PATCH
    assert [e["resource"]["id"] for e in search["resource"].get("entry", [])] == [new_id.split("/")[1]]
    written = [k for k, _ in reversed(all_versions(client))][2:]  # oldest first, after the two set-up PUTs
    assert written == ["Patient/ord-c", new_id, "Patient/ord-a", "Patient/ord-b"], written


def test_conditional_reference_in_a_batch_entry_and_in_a_patch(client):
    org = client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "GP",
                                                  "identifier": ident("ods9", "https://example.org/ods")}).json()
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    ref = "Organization?identifier=https://example.org/ods|ods9"
    r = run(client, tx(post(None, {**patient(), "managingOrganization": {"reference": ref}}),
                       post(None, {**patient(), "managingOrganization": {"reference": "Organization?name=nobody"}}),
                       kind="batch"))
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "412"]
    assert r.json()["entry"][0]["resource"]["managingOrganization"]["reference"] == f"Organization/{org['id']}"
    r = run(client, tx(patch_entry(f"Patient/{rid}", [{"op": "add", "path": "/managingOrganization",
                                                        "value": {"reference": ref}}])))
    assert r.status_code == 200, r.text
    assert client.get(f"/fhir/Patient/{rid}").json()["managingOrganization"]["reference"] == f"Organization/{org['id']}"


def test_a_transaction_failing_after_writes_leaves_no_version_and_no_index_row(client, services):
    """Nothing half-written: versions, current rows and search index rows all roll back together."""
    from sqlalchemy import func, select

    from service.search.tables import INDEX_TABLES, sp_compartment
    from service.storage.tables import resource as R

    def counts() -> dict[str, int]:  # every request writes its AuditEvent: those are left out
        with services.db.read() as conn:
            out = {}
            for t in {R, *INDEX_TABLES.values(), sp_compartment}:
                out[t.name] = conn.execute(select(func.count()).select_from(t).where(
                    t.c.res_type != "AuditEvent")).scalar_one()
            return out

    client.put("/fhir/Patient/stays", json=patient(id="stays", identifier=ident("stays")))
    client.put("/fhir/Patient/kept", json=patient(id="kept"))
    versions, before = all_versions(client), counts()
    r = run(client, tx(
        req("DELETE", "Patient/stays"),
        post("urn:uuid:p", patient(identifier=ident("rolled-back"))),
        post(None, obs("urn:uuid:p", effectiveDateTime="2024-01-01", valueQuantity={"value": 1})),
        put("Patient/kept", patient(id="kept", gender="male", identifier=ident("changed"))),
        put("Patient/other", patient(id="other", birthDate="not-a-date"))))
    assert_outcome(r, 422, "Bundle.entry[4]", "Patient.birthDate")
    assert all_versions(client) == versions
    assert counts() == before
    assert client.get(f"/fhir/Patient?identifier={MRN}|rolled-back").json()["total"] == 0
    assert client.get(f"/fhir/Patient?identifier={MRN}|stays").json()["total"] == 1
    assert client.get(f"/fhir/Patient?identifier={MRN}|changed").json()["total"] == 0
    assert client.get("/fhir/Patient/kept").json()["gender"] == "female"
