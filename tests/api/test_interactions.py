"""Interactions beyond the basics: Prefer, conditional create, PATCH, delete, history, HEAD."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import orjson

from tests.api.support import FHIR, all_versions, assert_outcome, patient

PATCH = "application/json-patch+json"
MRN = "urn:oid:1.2.3.4"


def create(client: Any, **extra: Any) -> dict[str, Any]:
    r = client.post("/fhir/Patient", json=patient(**extra))
    assert r.status_code == 201, r.text
    return r.json()


def do_patch(client: Any, rid: str, ops: Any, **headers: str) -> Any:
    return client.patch(f"/fhir/Patient/{rid}", content=orjson.dumps(ops),
                        headers={"Content-Type": PATCH, **headers})


# -- Prefer -----------------------------------------------------------------------------------------
def test_prefer_return_variants_on_create_update_and_patch(client):
    minimal = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["etag"] == 'W/"1"' and "location" in minimal.headers and "last-modified" in minimal.headers
    rid = minimal.headers["location"].split("/Patient/")[1].split("/")[0]

    oo = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"),
                    headers={"Prefer": "return=OperationOutcome"})
    assert oo.status_code == 200 and oo.json()["resourceType"] == "OperationOutcome"
    assert oo.json()["issue"][0]["severity"] == "information" and rid in oo.json()["issue"][0]["diagnostics"]
    assert oo.headers["etag"] == 'W/"2"'

    rep = do_patch(client, rid, [{"op": "replace", "path": "/gender", "value": "other"}],
                   Prefer="return=representation")
    assert rep.status_code == 200 and rep.json()["gender"] == "other" and rep.json()["meta"]["versionId"] == "3"
    default = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid))
    assert default.json()["resourceType"] == "Patient"  # representation is the default


# -- conditional create -----------------------------------------------------------------------------
def test_conditional_create_returns_the_one_match_with_200(client):
    first = create(client, identifier=[{"system": MRN, "value": "c-1"}])
    r = client.post("/fhir/Patient", json=patient(identifier=[{"system": MRN, "value": "c-1"}]),
                    headers={"If-None-Exist": f"identifier={MRN}|c-1"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == first["id"] and r.headers["etag"] == 'W/"1"'
    assert len(all_versions(client)) == 1


def test_conditional_create_with_no_match_creates(client):
    r = client.post("/fhir/Patient", json=patient(identifier=[{"system": MRN, "value": "c-2"}]),
                    headers={"If-None-Exist": f"identifier={MRN}|c-2"})
    assert r.status_code == 201


def test_conditional_create_with_several_matches_is_412_and_writes_nothing(client):
    create(client, identifier=[{"system": MRN, "value": "c-3"}])
    create(client, identifier=[{"system": MRN, "value": "c-3"}])
    before = all_versions(client)
    r = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": f"identifier={MRN}|c-3"})
    assert_outcome(r, 412, "matched 2")
    assert all_versions(client) == before


# -- update -----------------------------------------------------------------------------------------
def test_update_with_matching_if_match_succeeds_and_chains_versions(client):
    rid = create(client)["id"]
    for v in range(1, 5):
        r = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, birthDate=f"200{v}-01-01"),
                       headers={"If-Match": f'W/"{v}"'})
        assert r.status_code == 200 and r.headers["etag"] == f'W/"{v + 1}"'
        assert r.headers["location"].endswith(f"/_history/{v + 1}")
    versions = [v for _, v in all_versions(client)]
    assert versions == ["5", "4", "3", "2", "1"]


def test_update_as_create_then_if_match_on_a_new_id_is_412(client):
    r = client.put("/fhir/Patient/new-one", json=patient(id="new-one"), headers={"If-Match": 'W/"1"'})
    assert_outcome(r, 412, "does not exist")
    assert all_versions(client) == []


def test_conditional_update_by_search(client):
    rid = create(client, identifier=[{"system": MRN, "value": "u-1"}])["id"]
    r = client.put(f"/fhir/Patient?identifier={quote(MRN)}|u-1",
                   json=patient(identifier=[{"system": MRN, "value": "u-1"}], gender="male"))
    assert r.status_code == 200 and r.json()["id"] == rid and r.json()["meta"]["versionId"] == "2"
    r2 = client.put(f"/fhir/Patient?identifier={quote(MRN)}|u-2", json=patient())
    assert r2.status_code == 201


# -- PATCH ------------------------------------------------------------------------------------------
def test_patch_applies_json_patch_and_makes_a_new_version(client):
    rid = create(client)["id"]
    r = do_patch(client, rid, [{"op": "test", "path": "/gender", "value": "female"},
                               {"op": "replace", "path": "/gender", "value": "male"},
                               {"op": "add", "path": "/name/0/given/-", "value": "Ann"}])
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    body = client.get(f"/fhir/Patient/{rid}").json()
    assert body["gender"] == "male" and body["name"][0]["given"] == ["Jo", "Ann"]
    history = client.get(f"/fhir/Patient/{rid}/_history").json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


def test_patch_honours_if_match(client):
    rid = create(client)["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert_outcome(do_patch(client, rid, ops, **{"If-Match": 'W/"7"'}), 412, "version 1", "If-Match")
    assert [v for _, v in all_versions(client)] == ["1"]
    assert do_patch(client, rid, ops, **{"If-Match": 'W/"1"'}).status_code == 200


def test_patch_failures_write_nothing(client):
    rid = create(client)["id"]
    before = all_versions(client)
    cases = [
        ([{"op": "test", "path": "/gender", "value": "male"}], 422, "test failed"),
        ([{"op": "add", "path": "/birthDate", "value": "yesterday"}], 422, "Patient.birthDate"),
        ([{"op": "replace", "path": "/id", "value": "other-id"}], 422, "id"),
        ([{"op": "replace", "path": "/resourceType", "value": "Group"}], 422, "resourceType"),
        ([{"op": "remove", "path": "/nothing/here"}], 422, "cannot be applied"),
        ([{"op": "explode", "path": "/gender"}], 422, "cannot be applied"),
        ({"op": "replace"}, 400, "array"),
    ]
    for ops, status, word in cases:
        assert_outcome(do_patch(client, rid, ops), status, word)
    assert_outcome(client.patch(f"/fhir/Patient/{rid}", json=[{"op": "remove", "path": "/gender"}],
                                headers={"Content-Type": FHIR}), 415, "JSON Patch")
    assert_outcome(client.patch(f"/fhir/Patient/{rid}", content=b"[{", headers={"Content-Type": PATCH}),
                   400, "not valid JSON")
    assert all_versions(client) == before
    assert_outcome(do_patch(client, "missing", [{"op": "remove", "path": "/gender"}]), 404, "Patient/missing")
    client.delete(f"/fhir/Patient/{rid}")
    assert_outcome(do_patch(client, rid, [{"op": "remove", "path": "/gender"}]), 410, "deleted")


# -- delete -----------------------------------------------------------------------------------------
def test_delete_is_logical_shows_in_history_and_allows_recreate(client):
    rid = create(client)["id"]
    d = client.delete(f"/fhir/Patient/{rid}")
    assert d.status_code == 204 and d.content == b"" and d.headers["etag"] == 'W/"2"'
    assert_outcome(client.get(f"/fhir/Patient/{rid}"), 410, f"Patient/{rid}", "deleted")
    assert client.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200
    assert_outcome(client.get(f"/fhir/Patient/{rid}/_history/2"), 410, "deletion")
    hist = client.get(f"/fhir/Patient/{rid}/_history").json()
    top = hist["entry"][0]
    assert "resource" not in top
    assert top["request"] == {"method": "DELETE", "url": f"Patient/{rid}"}
    assert top["response"]["status"].startswith("204") and top["response"]["etag"] == 'W/"2"'
    again = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid))
    assert again.status_code == 201 and again.headers["etag"] == 'W/"3"'
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200
    # deleting twice, or something unknown, is not an error (idempotent)
    assert client.delete("/fhir/Patient/never-was").status_code == 204


def test_delete_with_stale_if_match_is_412(client):
    rid = create(client)["id"]
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    assert_outcome(client.delete(f"/fhir/Patient/{rid}", headers={"If-Match": 'W/"1"'}), 412, "version 2")
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200


# -- history ----------------------------------------------------------------------------------------
def _history(client: Any, url: str) -> dict[str, Any]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "history"
    return body


def _walk(client: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pages = 0
    while url:
        body = _history(client, url)
        out += body.get("entry", [])
        nxt = [lk["url"] for lk in body["link"] if lk["relation"] == "next"]
        url = nxt[0] if nxt else ""
        pages += 1
        assert pages < 100
    return out


def test_instance_history_newest_first_with_count_and_paging(client):
    rid = create(client)["id"]
    for g in ("male", "other", "unknown", "female"):
        client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender=g))
    client.delete(f"/fhir/Patient/{rid}")
    first = _history(client, f"/fhir/Patient/{rid}/_history?_count=2")
    assert [e["response"]["etag"] for e in first["entry"]] == ['W/"6"', 'W/"5"']
    assert {lk["relation"] for lk in first["link"]} >= {"self", "first", "next"}
    entries = _walk(client, f"/fhir/Patient/{rid}/_history?_count=2")
    assert [e["response"]["etag"] for e in entries] == [f'W/"{v}"' for v in range(6, 0, -1)]
    assert entries[0]["request"]["method"] == "DELETE"
    assert entries[-1]["request"]["method"] == "POST" and entries[-1]["response"]["status"].startswith("201")
    assert entries[-1]["resource"]["gender"] == "female"


def test_history_pages_are_stable_while_new_versions_arrive(client):
    rid = create(client)["id"]
    for g in ("male", "other", "unknown"):
        client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender=g))
    first = _history(client, f"/fhir/Patient/{rid}/_history?_count=2")
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="female"))  # version 5, after page 1
    nxt = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
    second = _history(client, nxt)
    assert [e["response"]["etag"] for e in second["entry"]] == ['W/"2"', 'W/"1"']


def test_type_and_system_history(client):
    p1 = create(client)["id"]
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Council"})
    p2 = create(client)["id"]
    client.put(f"/fhir/Patient/{p1}", json=patient(id=p1, gender="male"))
    client.delete(f"/fhir/Patient/{p2}")
    typ = _walk(client, "/fhir/Patient/_history?_count=2")
    assert [(e["fullUrl"].rsplit("/", 1)[1], e["response"]["etag"]) for e in typ] == [
        (p2, 'W/"2"'), (p1, 'W/"2"'), (p2, 'W/"1"'), (p1, 'W/"1"')]
    # the audit layer writes an AuditEvent for every request; the system history holds those too
    system = [e for e in _walk(client, "/fhir/_history?_count=3") if "/AuditEvent/" not in e["fullUrl"]]
    assert len(system) == 5
    assert [e["fullUrl"].split("/fhir/")[1].split("/")[0] for e in system] == [
        "Patient", "Patient", "Patient", "Organization", "Patient"]
    assert _history(client, "/fhir/_history?_count=0").get("entry") is None


def test_history_since(client):
    rid = create(client)["id"]
    time.sleep(0.01)
    mark = client.get(f"/fhir/Patient/{rid}").json()["meta"]["lastUpdated"]
    time.sleep(0.01)
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    other = create(client)["id"]
    since = quote(mark)
    inst = _history(client, f"/fhir/Patient/{rid}/_history?_since={since}")
    assert [e["response"]["etag"] for e in inst["entry"]] == ['W/"2"', 'W/"1"']  # _since is inclusive
    later = client.get(f"/fhir/Patient/{other}").json()["meta"]["lastUpdated"]
    typ = _history(client, f"/fhir/Patient/_history?_since={quote(later)}")
    assert [e["fullUrl"].rsplit("/", 1)[1] for e in typ["entry"]] == [other]
    future = _history(client, "/fhir/_history?_since=2999-01-01T00:00:00Z")
    assert future.get("entry") is None
    assert_outcome(client.get("/fhir/_history?_since=last-tuesday"), 400, "_since")
    assert_outcome(client.get("/fhir/_history?_count=many"), 400, "_count")
    assert_outcome(client.get("/fhir/Patient/unknown-id/_history"), 404, "Patient/unknown-id")


# -- HEAD -------------------------------------------------------------------------------------------
def test_head_gives_headers_without_a_body(client):
    rid = create(client)["id"]
    r = client.head(f"/fhir/Patient/{rid}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["etag"] == 'W/"1"' and "last-modified" in r.headers
    assert client.head("/fhir/Patient/nope").status_code == 404
    assert client.head("/fhir/metadata").status_code == 200


# -- history: _since and _count at every level ------------------------------------------------------
def _data_entries(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(Type/id, etag) of the entries, leaving out the AuditEvents every request writes."""
    return [(e["fullUrl"].split("/fhir/", 1)[1], e["response"]["etag"]) for e in entries
            if "/AuditEvent/" not in e["fullUrl"]]


def test_history_since_and_count_on_instance_type_and_system(client):
    old = create(client)["id"]
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Before"})
    time.sleep(0.01)
    rid = create(client)["id"]
    mark = client.get(f"/fhir/Patient/{rid}").json()["meta"]["lastUpdated"]  # inclusive from here
    for g in ("male", "other", "unknown"):
        client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender=g))
    org = client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "After"}).json()["id"]
    client.delete(f"/fhir/Patient/{old}")
    since = quote(mark)
    newest_first = [(f"Patient/{old}", 'W/"2"'), (f"Organization/{org}", 'W/"1"'), (f"Patient/{rid}", 'W/"4"'),
                    (f"Patient/{rid}", 'W/"3"'), (f"Patient/{rid}", 'W/"2"'), (f"Patient/{rid}", 'W/"1"')]
    system = _data_entries(_walk(client, f"/fhir/_history?_since={since}&_count=2"))
    assert system == newest_first
    typ = _data_entries(_walk(client, f"/fhir/Patient/_history?_since={since}&_count=2"))
    assert typ == [e for e in newest_first if e[0].startswith("Patient/")]
    inst = _history(client, f"/fhir/Patient/{rid}/_history?_since={since}&_count=3")
    assert _data_entries(inst["entry"]) == [(f"Patient/{rid}", f'W/"{v}"') for v in (4, 3, 2)]
    nxt = next(lk["url"] for lk in inst["link"] if lk["relation"] == "next")
    assert "_since=" in nxt and "_count=3" in nxt
    assert _data_entries(_history(client, nxt)["entry"]) == [(f"Patient/{rid}", 'W/"1"')]
    # _since in another zone is the same instant
    local = quote(mark.replace("+00:00", "Z"))
    assert _data_entries(_walk(client, f"/fhir/Patient/{rid}/_history?_since={local}")) == \
        [(f"Patient/{rid}", f'W/"{v}"') for v in (4, 3, 2, 1)]


def test_history_count_above_the_maximum_is_clamped_and_the_self_link_says_so(client):
    rid = create(client)["id"]
    for level in (f"Patient/{rid}/_history", "Patient/_history", "_history"):
        body = _history(client, f"/fhir/{level}?_count=5000")
        self_link = next(lk["url"] for lk in body["link"] if lk["relation"] == "self")
        assert "_count=1000" in self_link, self_link
        assert all("request" in e and "response" in e for e in body["entry"])  # bdl-3/4: no bare entries
