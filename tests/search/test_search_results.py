"""Search results, on SQLite and PostgreSQL: _total modes, _summary and _elements, includes (:iterate, *)
at a bounded number of queries, paging links bound to the caller, POST _search, compartments, $everything
with _since, and Prefer: handling=strict for every kind of unknown parameter."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import event

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def post(client: Any, res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return r.json()


def get(client: Any, url: str, status: int = 200, **kw: Any) -> dict[str, Any]:
    r = client.get("/fhir/" + url, **kw)
    assert r.status_code == status, r.text
    return r.json()


def matches(body: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]


def included(body: dict[str, Any]) -> set[str]:
    """Included Type/id, leaving out the AuditEvents of the requests themselves (they reference the
    patients they concern, so `_revinclude=*` and compartments find them too, as the spec says)."""
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry", [])
            if e["search"]["mode"] == "include" and e["resource"]["resourceType"] != "AuditEvent"}


def link(body: dict[str, Any], rel: str) -> str | None:
    return next((lk["url"] for lk in body["link"] if lk["relation"] == rel), None)


def walk(client: Any, url: str) -> list[str]:
    out: list[str] = []
    body = get(client, url)
    while True:
        out += matches(body)
        nxt = link(body, "next")
        if not nxt:
            return out
        body = client.get(nxt).json()


@pytest.fixture
def people(client):  # type: ignore[no-untyped-def]
    org = post(client, {"resourceType": "Organization", "name": "Riverside GP"})
    gp = post(client, {"resourceType": "Practitioner", "name": [{"family": "Okafor"}]})
    pats = [post(client, {"resourceType": "Patient", "gender": "female" if i % 2 else "male",
                          "name": [{"family": f"Person{i:02d}"}], "text": {"status": "generated",
                                                                           "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Person {i}</div>'},
                          "managingOrganization": {"reference": f"Organization/{org['id']}"},
                          "generalPractitioner": [{"reference": f"Practitioner/{gp['id']}"}]})
            for i in range(12)]
    plans = [post(client, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                           "subject": {"reference": f"Patient/{p['id']}"},
                           "author": {"reference": f"Practitioner/{gp['id']}"}}) for p in pats]
    return {"org": org, "gp": gp, "pats": pats, "plans": plans}


# -- _total ------------------------------------------------------------------------------------------
def test_total_accurate_by_default_estimate_and_none(client, people):  # type: ignore[no-untyped-def]
    assert get(client, "Patient?_count=2")["total"] == 12
    assert get(client, "Patient?_count=2&_total=accurate")["total"] == 12
    estimate = get(client, "Patient?_count=2&_total=estimate")
    assert estimate["total"] == 12  # estimate is counted too
    none = get(client, "Patient?_count=2&_total=none")
    assert "total" not in none and len(matches(none)) == 2 and link(none, "next")
    assert "_total=none" in link(none, "next")  # the mode carries over to the next page
    assert "total" not in client.get(link(none, "next")).json()
    zero = get(client, "Patient?gender=female&_count=0")
    assert zero["total"] == 6 and "entry" not in zero
    assert get(client, "Patient?_summary=count&_total=none")["total"] == 12  # count asks for the total


# -- _summary and _elements --------------------------------------------------------------------------
def test_summary_text_data_true_and_elements(client, people):  # type: ignore[no-untyped-def]
    pid = people["pats"][0]["id"]

    def one(q: str) -> dict[str, Any]:
        return get(client, f"Patient?_id={pid}&{q}")["entry"][0]["resource"]

    full = get(client, f"Patient/{pid}")
    text = one("_summary=text")
    assert set(text) == {"resourceType", "id", "meta", "text"} and text["text"] == full["text"]
    data = one("_summary=data")
    assert "text" not in data and data["name"] == full["name"] and data["managingOrganization"]
    true = one("_summary=true")
    assert "text" not in true and true["name"] == full["name"]
    for res in (text, data, true, one("_elements=name")):
        assert res["meta"]["tag"][-1]["code"] == "SUBSETTED"
        assert res["meta"]["versionId"] == full["meta"]["versionId"]
    elements = one("_elements=name,gender")
    assert set(elements) == {"resourceType", "id", "meta", "name", "gender"}
    assert "SUBSETTED" not in str(one("_summary=false"))
    assert one("_summary=false") == full
    # the stored resource itself is untouched
    assert get(client, f"Patient/{pid}") == full


# -- _include / _revinclude ----------------------------------------------------------------------------
def test_include_and_revinclude_with_iterate_and_wildcards(client, people):  # type: ignore[no-untyped-def]
    p0 = people["pats"][0]["id"]
    org, gp, plan0 = people["org"]["id"], people["gp"]["id"], people["plans"][0]["id"]
    body = get(client, f"Patient?_id={p0}&_include=*")
    assert included(body) == {f"Organization/{org}", f"Practitioner/{gp}"}
    body = get(client, f"Patient?_id={p0}&_include=Patient:general-practitioner:Practitioner")
    assert included(body) == {f"Practitioner/{gp}"}
    body = get(client, f"Patient?_id={p0}&_include=Patient:general-practitioner:Organization")
    assert included(body) == set()
    body = get(client, f"Patient?_id={p0}&_revinclude=*")
    assert included(body) == {f"CarePlan/{plan0}"}
    # :iterate follows what the previous round added: CarePlan -> Patient -> Organization
    body = get(client, f"CarePlan?_id={plan0}&_include=CarePlan:subject&_include:iterate=Patient:organization")
    assert included(body) == {f"Patient/{p0}", f"Organization/{org}"}
    body = get(client, f"CarePlan?_id={plan0}&_include=CarePlan:subject&_include=Patient:organization")
    assert included(body) == {f"Patient/{p0}"}  # without :iterate the second spec applies to matches only
    # _revinclude:iterate: Organization <- Patient <- CarePlan
    body = get(client, f"Organization?_id={org}&_revinclude=Patient:organization"
                       "&_revinclude:iterate=CarePlan:subject")
    assert included(body) == {f"Patient/{p['id']}" for p in people["pats"]} | {
        f"CarePlan/{p['id']}" for p in people["plans"]}
    assert body["total"] == 1
    # a resource both matched and included appears once, as a match
    body = get(client, f"Patient?_id={p0}&_include=*&_revinclude=*&_include:iterate=*")
    keys = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in body["entry"]]
    assert len(keys) == len(set(keys))


def _statements(services: Any, client: Any, url: str) -> int:
    """SELECT statements run while answering one request, leaving out the audit of the request."""
    count = 0
    lock = threading.Lock()

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        nonlocal count
        if statement.lstrip().upper().startswith("SELECT") and "audit_" not in statement:
            with lock:
                count += 1

    for engine in services.db.engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        r = client.get(url)
        assert r.status_code == 200, r.text
    finally:
        for engine in services.db.engines:
            event.remove(engine, "before_cursor_execute", seen)
    return count


def test_includes_cost_a_bounded_number_of_queries_never_one_per_resource(client, clean_services, people):  # type: ignore[no-untyped-def]
    q = "&_include=Patient:organization&_include=Patient:general-practitioner&_revinclude=CarePlan:subject" \
        "&_include:iterate=CarePlan:performer"
    small = _statements(clean_services, client, f"/fhir/Patient?_count=2{q}")
    large = _statements(clean_services, client, f"/fhir/Patient?_count=11{q}")  # (both pages have a next page:
    plain = _statements(clean_services, client, "/fhir/Patient?_count=11")       # a page holding every match
    body = get(client, f"Patient?_count=11{q}")                                  # needs no count query)
    assert len(matches(body)) == 11 and len(included(body)) == 2 + 11
    assert large == small, (small, large)  # six times the resources, the same number of statements
    assert large - plain <= 12, (plain, large)  # a handful per include spec and type, not 26 per resource


# -- paging links --------------------------------------------------------------------------------------
def test_paging_link_is_bound_to_the_caller(app, clean_services):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from tests.conftest import make_auth_headers

    with TestClient(app, base_url="http://testserver", headers=make_auth_headers(clean_services)) as admin:
        for i in range(3):
            post(admin, {"resourceType": "Organization", "name": f"Org {i}"})
        body = get(admin, "Organization?_count=1")
        nxt = link(body, "next")
        assert nxt and admin.get(nxt).status_code == 200
        other = make_auth_headers(clean_services, client="gp-system")
        r = admin.get(nxt, headers=other)
        assert r.status_code == 400, r.text
        assert r.json()["resourceType"] == "OperationOutcome" and "paging link" in r.text
        # the same search started by that caller pages normally
        own = admin.get("/fhir/Organization?_count=1", headers=other)
        assert own.status_code == 200 and admin.get(link(own.json(), "next"), headers=other).status_code == 200


def test_edited_paging_links_are_refused(client, people):  # type: ignore[no-untyped-def]
    body = get(client, "Patient?gender=female&_count=2&_sort=family")
    nxt = link(body, "next")
    assert nxt is not None
    for edited in (nxt.replace("gender=female", "gender=male"), nxt.replace("_count=2", "_count=200"),
                   nxt.replace("_sort=family", "_sort=-family"), nxt + "&name=person",
                   nxt.replace("/Patient?", "/Practitioner?")):
        r = client.get(edited)
        assert r.status_code == 400 and "paging link" in r.text, (edited, r.text)
    assert client.get(nxt).status_code == 200


def test_paging_walks_every_match_once_forwards_and_backwards(client, people):  # type: ignore[no-untyped-def]
    everyone = sorted(p["id"] for p in people["pats"])
    for sort in ("", "&_sort=-family", "&_sort=gender,-_lastUpdated"):
        pages = []
        body = get(client, f"Patient?_count=5{sort}")
        pages.append(matches(body))
        while nxt := link(body, "next"):
            body = client.get(nxt).json()
            pages.append(matches(body))
        assert sorted(i for p in pages for i in p) == everyone, sort
        back = []
        while prev := link(body, "previous"):
            body = client.get(prev).json()
            back.insert(0, matches(body))
        assert back == pages[:-1], sort


# -- POST _search --------------------------------------------------------------------------------------
def test_post_search_is_equivalent_to_get(client, people):  # type: ignore[no-untyped-def]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    queries = ["gender=female&_count=3&_sort=family", "name=person0&_include=Patient:organization",
               "_id=" + people["pats"][1]["id"] + "&_revinclude=CarePlan:subject&_total=none",
               "gender=male&_summary=count"]
    for q in queries:
        by_get = get(client, f"Patient?{q}")
        by_post = client.post("/fhir/Patient/_search", content=q, headers=form)
        assert by_post.status_code == 200 and by_post.json() == by_get, q
    # parameters may also sit in the URL of a POST; the next link it gives works with GET
    r = client.post("/fhir/Patient/_search?gender=female", content="_count=2&_sort=family", headers=form)
    assert r.json() == get(client, "Patient?gender=female&_count=2&_sort=family")
    assert matches(client.get(link(r.json(), "next")).json())
    # system level too
    r = client.post("/fhir/_search", content="_type=Organization,Practitioner", headers=form)
    assert r.status_code == 200 and r.json()["total"] == 2
    # errors are the same
    bad = client.post("/fhir/Patient/_search", content="birthdate=2020-13-45", headers=form)
    assert bad.status_code == 400 and "birthdate" in bad.text
    strict = client.post("/fhir/Patient/_search", content="nonsense=1",
                         headers={**form, "Prefer": "handling=strict"})
    assert strict.status_code == 400 and "nonsense" in strict.text
    assert client.get("/fhir/Patient/_search").status_code == 405


# -- compartments and $everything ------------------------------------------------------------------------
def test_compartment_search(client, people):  # type: ignore[no-untyped-def]
    p0, p1 = people["pats"][0]["id"], people["pats"][1]["id"]
    obs = post(client, {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                        "subject": {"reference": f"Patient/{p0}"}, "performer": [{"reference": f"Patient/{p1}"}]})
    assert matches(get(client, f"Patient/{p0}/CarePlan")) == [people["plans"][0]["id"]]
    assert matches(get(client, f"Patient/{p0}/Observation")) == [obs["id"]]
    assert matches(get(client, f"Patient/{p1}/Observation")) == [obs["id"]]  # performer is in the compartment
    assert matches(get(client, f"Patient/{p0}/Observation?code:text=weight")) == [obs["id"]]
    assert matches(get(client, f"Patient/{p0}/Observation?code:text=height")) == []
    everything = get(client, f"Patient/{p0}/*?_count=100")
    # the server's Provenance of each plan belongs to the plan's patient too (service.ownership)
    assert {(e["resource"]["resourceType"]) for e in everything["entry"]} - {"AuditEvent"} == {
        "Patient", "CarePlan", "Observation", "Provenance"}
    assert get(client, "Patient/nobody/CarePlan")["total"] == 0
    r = client.get(f"/fhir/Patient/{p0}/Organization")
    assert r.status_code == 400 and "compartment" in r.text
    r = client.get(f"/fhir/Encounter/{p0}/Observation")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_everything_pages_and_honours_since_type_and_count(client, people):  # type: ignore[no-untyped-def]
    p0 = people["pats"][0]
    pid = p0["id"]
    for i in range(6):
        post(client, {"resourceType": "Observation", "status": "final", "code": {"text": f"o{i}"},
                      "subject": {"reference": f"Patient/{pid}"}})
    time.sleep(0.01)
    later = [post(client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
                           "code": {"text": f"c{i}"}}) for i in range(3)]
    since = later[0]["meta"]["lastUpdated"]
    clinical = "_type=Patient,CarePlan,Observation,Condition"  # (the audit trail is in the compartment too)
    got = walk(client, f"Patient/{pid}/$everything?{clinical}&_count=4")
    assert len(got) == len(set(got)) == 1 + 1 + 6 + 3  # patient, care plan, observations, conditions
    first = get(client, f"Patient/{pid}/$everything?{clinical}&_count=4")
    assert first["total"] == 11 and len(matches(first)) == 4 and link(first, "next")
    body, kinds = first, set()
    while True:  # the referenced resources outside the compartment come along as includes
        kinds |= {e["resource"]["resourceType"] for e in body["entry"] if e["search"]["mode"] == "include"}
        if not (nxt := link(body, "next")):
            break
        body = client.get(nxt).json()
    assert kinds == {"Organization", "Practitioner"}
    assert sorted(walk(client, f"Patient/{pid}/$everything?{clinical}&_since={quote(since)}&_count=2")) == sorted(
        c["id"] for c in later)
    everything = walk(client, f"Patient/{pid}/$everything?_count=7")
    assert set(got) <= set(everything) and len(everything) == len(set(everything))
    assert len(walk(client, f"Patient/{pid}/$everything?_type=Observation,Patient&_count=3")) == 7
    r = client.get(f"/fhir/Patient/{pid}/$everything?_since=yesterday")
    assert r.status_code == 400 and "_since" in r.text


# -- Prefer: handling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("query,name", [
    ("nonsense=1", "nonsense"),
    ("_sort=nonsense", "nonsense"),
    ("_include=Patient:nonsense", "nonsense"),
    ("_revinclude=Nonsense:subject", "Nonsense"),
    ("_contained=true", "_contained"),
    ("_type=Patient", "_type"),
    ("_has:CarePlan:nonsense:status=active", "nonsense"),
])
def test_strict_handling_refuses_what_lenient_handling_ignores(client, people, query, name):  # type: ignore[no-untyped-def]
    for headers in ({"Prefer": "handling=strict"}, {}):  # strict is the default: search never silently widens
        strict = client.get(f"/fhir/Patient?{query}", headers=headers)
        assert strict.status_code == 400, strict.text
        body = strict.json()
        assert body["resourceType"] == "OperationOutcome" and name in body["issue"][0]["diagnostics"]
    lenient = client.get(f"/fhir/Patient?{query}&_count=50", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200, lenient.text
    lb = lenient.json()
    assert len(matches(lb)) == 12 and lb["total"] == 12
    assert link(lb, "self") == "http://testserver/fhir/Patient?_count=50"  # shows only what was applied
    warning = [e for e in lb["entry"] if e["search"]["mode"] == "outcome"]
    assert warning and name in str(warning[0]["resource"])


def test_count_is_clamped_with_a_note(client, people):  # type: ignore[no-untyped-def]
    body = get(client, "Patient?_count=100000")
    assert "_count=1000" in link(body, "self")
    notes = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert notes and "1000" in notes[0]["issue"][0]["diagnostics"]
    assert len(matches(body)) == 12


def test_identifier_search_finds_by_nhs_number(client):  # type: ignore[no-untyped-def]
    p = post(client, {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}]})
    plan = post(client, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                         "subject": {"reference": f"Patient/{p['id']}"}})
    assert matches(get(client, f"Patient?identifier={NHS}|9434765919")) == [p["id"]]
    assert matches(get(client, f"CarePlan?subject:Patient.identifier={NHS}|9434765919")) == [plan["id"]]
    assert matches(get(client, f"CarePlan?subject:identifier={NHS}|9434765919")) == []  # not a logical reference
