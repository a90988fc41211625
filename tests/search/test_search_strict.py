"""Search never silently widens (SQLite and PostgreSQL): an unknown or unsupported parameter, modifier or result
parameter value is a 400 naming it; `Prefer: handling=lenient` ignores it with a warning in the Bundle; the
result parameters common clients send are accepted quietly; `POST _search` takes a form body and refuses any
other with 415. fhirpy and fhirclient (real client libraries, their HTTP carried to the app in-process) work
unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

LENIENT = {"Prefer": "handling=lenient"}


def post(client: Any, res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return r.json()


def matches(body: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]


def outcomes(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in body.get("entry", []) if e["search"]["mode"] == "outcome"]


@pytest.fixture
def people(client):  # type: ignore[no-untyped-def]
    org = post(client, {"resourceType": "Organization", "name": "Riverside Practice"})
    pats = [post(client, {"resourceType": "Patient", "gender": ["female", "male"][i % 2],
                          "name": [{"family": f"Strict{i}", "given": ["Sam"]}],
                          "managingOrganization": {"reference": f"Organization/{org['id']}"}}) for i in range(5)]
    obs = [post(client, {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": f"Patient/{p['id']}"}}) for p in pats]
    return {"org": org, "pats": pats, "obs": obs}


REFUSED = [
    ("Patient?nonsense=1", "nonsense"),
    ("Patient?name:fuzzy=sam", "fuzzy"),  # an unsupported modifier
    ("Patient?gender:below=female", "below"),
    ("Patient?family:text=strict", "text"),
    ("Patient?_filter=family eq strict0", "_filter"),
    ("Patient?_query=mine", "_query"),
    ("Patient?_text:exact=strict", "_text"),
    ("Patient?_list=$current-problems", "_list"),
    ("Patient?_contained=true", "_contained"),
    ("Patient?_type=Patient", "_type"),
    ("Patient?_sort=nonsense", "nonsense"),
    ("Patient?_include=Patient:nonsense", "nonsense"),
    ("Patient?_revinclude=Observation:nonsense", "nonsense"),
    ("Patient?_has:Observation:nonsense:code=8867-4", "nonsense"),
    ("Patient?organization.nonsense=x", "nonsense"),
    ("Observation?code-value-quantity:missing=true", "code-value-quantity"),
    ("?nonsense=1", "nonsense"),  # system level
    ("?family=strict", "family"),  # not common to every type
]


@pytest.mark.parametrize("query,name", REFUSED)
def test_unknown_or_unsupported_is_refused_unless_lenient(client, people, query, name):  # type: ignore[no-untyped-def]
    for headers in ({}, {"Prefer": "handling=strict"}):
        r = client.get(f"/fhir/{query}", headers=headers)
        assert r.status_code == 400, (query, r.text)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-supported"
        assert name in body["issue"][0]["diagnostics"]
    lenient = client.get(f"/fhir/{query}", headers=LENIENT)
    assert lenient.status_code == 200, lenient.text
    notes = outcomes(lenient.json())
    assert notes and notes[0]["issue"][0]["severity"] == "warning" and name in str(notes[0])


def test_lenient_ignores_only_what_it_names_and_says_so(client, people):  # type: ignore[no-untyped-def]
    body = client.get("/fhir/Patient?family=strict0&nonsense=1&_count=50", headers=LENIENT).json()
    assert matches(body) == [people["pats"][0]["id"]]  # the understood criterion still applies
    self_link = next(lk["url"] for lk in body["link"] if lk["relation"] == "self")
    assert "nonsense" not in self_link and "family=strict0" in self_link  # the link shows what was applied
    assert "nonsense" in str(outcomes(body))


def test_compartment_and_conditional_searches_are_strict_too(client, people):  # type: ignore[no-untyped-def]
    pid = people["pats"][0]["id"]
    r = client.get(f"/fhir/Patient/{pid}/Observation?nonsense=1")
    assert r.status_code == 400 and "nonsense" in r.text
    assert client.get(f"/fhir/Patient/{pid}/Observation?nonsense=1", headers=LENIENT).status_code == 200
    r = client.put("/fhir/Patient?nonsense=1", json={"resourceType": "Patient"})
    assert r.status_code == 400 and "nonsense" in r.text
    r = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "nonsense=1"})
    assert r.status_code == 400 and "nonsense" in r.text


ACCEPTED = ["_count=2", "_sort=-family", "_include=Patient:organization", "_revinclude=Observation:subject",
            "_summary=true", "_summary=count", "_elements=name,gender", "_total=none", "_total=accurate",
            "_contained=false", "_containedType=container", "_format=json", "_format=application/fhir%2Bjson",
            "_pretty=true", "_totalMethod=count", "_include:iterate=Patient:organization"]


@pytest.mark.parametrize("query", ACCEPTED)
def test_result_parameters_clients_send_are_accepted_quietly(client, people, query):  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/Patient?family=strict&{query}")
    assert r.status_code == 200, (query, r.text)
    assert outcomes(r.json()) == [], query


@pytest.mark.parametrize("query,word", [("_contained=maybe", "_contained"), ("_containedType=x", "_containedType"),
                                        ("_total=some", "_total"), ("_summary=maybe", "_summary"),
                                        ("_count=many", "_count")])
def test_bad_values_of_result_parameters_are_400_even_when_lenient(client, query, word):  # type: ignore[no-untyped-def]
    for headers in ({}, LENIENT):
        r = client.get(f"/fhir/Patient?{query}", headers=headers)
        assert r.status_code == 400 and word in r.text, r.text


def test_post_search_takes_a_form_body_only(client, people):  # type: ignore[no-untyped-def]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    ok = client.post("/fhir/Patient/_search", content="family=strict1", headers=form)
    assert ok.status_code == 200 and matches(ok.json()) == [people["pats"][1]["id"]]
    bad = client.post("/fhir/Patient/_search", content="nonsense=1", headers=form)
    assert bad.status_code == 400 and "nonsense" in bad.text
    for ctype, body in (("application/fhir+json", b'{"family": "strict1"}'), ("application/json", b"{}"),
                        ("text/plain", b"family=strict1")):
        r = client.post("/fhir/Patient/_search", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 415, (ctype, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "x-www-form-urlencoded" in r.text or ctype == "text/plain"  # (refused at the HTTP edge)
        r = client.post("/fhir/_search", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 415, (ctype, r.text)
    # no body at all: the URL's parameters alone
    r = client.post("/fhir/Patient/_search?family=strict2")
    assert r.status_code == 200 and matches(r.json()) == [people["pats"][2]["id"]]


# -- real clients -----------------------------------------------------------------------------------------
class _ToApp(requests.adapters.BaseAdapter):
    """Carries a `requests` call to the app through the TestClient (the same HTTP, no socket)."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client

    def send(self, request: Any, **_: Any) -> requests.Response:  # type: ignore[override]
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        r = self.client.request(request.method, request.url, content=request.body, headers=headers)
        resp = requests.Response()
        resp.status_code, resp._content, resp.url, resp.request = r.status_code, r.content, request.url, request
        resp.headers = CaseInsensitiveDict(r.headers)
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        pass


def test_fhirpy_works_unchanged(client, people, monkeypatch):  # type: ignore[no-untyped-def]
    from fhirpy import SyncFHIRClient

    session = requests.Session()
    session.mount("http://testserver/", _ToApp(client))
    monkeypatch.setattr(requests, "request", session.request)
    fc = SyncFHIRClient("http://testserver/fhir")
    pats = fc.resources("Patient").search(family="strict").sort("-family").limit(2).fetch()
    assert [p["name"][0]["family"] for p in pats] == ["Strict4", "Strict3"]
    assert fc.resources("Patient").search(family="strict").count() == 5
    assert len(fc.resources("Patient").search(family="strict").limit(2).fetch_all()) == 5  # follows next links
    first = fc.resources("Patient").search(gender="female").sort("family").first()
    assert first is not None and first["name"][0]["family"] == "Strict0"
    found = fc.resources("Patient").search(family="strict3").get()
    assert found["id"] == people["pats"][3]["id"]
    slim = fc.resources("Patient").search(family="strict0").elements("gender").fetch()
    assert slim and "name" not in slim[0] and slim[0]["gender"] == "female"
    raw = fc.resources("Observation").search(subject=f"Patient/{people['pats'][0]['id']}").include(
        "Observation", "subject").fetch_raw()
    assert {e["search"]["mode"] for e in raw["entry"]} == {"match", "include"}
    with pytest.raises(Exception, match="nonsense"):
        fc.resources("Patient").search(nonsense="1").fetch()


def test_fhirclient_works_unchanged(client, people):  # type: ignore[no-untyped-def]
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient
    from fhirclient.server import FHIRServer

    server = FHIRServer(None, base_uri="http://testserver/fhir")
    server.session.mount("http://testserver/", _ToApp(client))
    pid = people["pats"][0]["id"]
    found = list(Observation.where({"subject": f"Patient/{pid}"}).perform_resources_iter(server))
    assert [o.id for o in found] == [people["obs"][0]["id"]]
    pats = Patient.where({"family": "strict", "gender": "male"}).perform_resources(server)
    assert sorted(p.id for p in pats) == sorted(p["id"] for p in people["pats"][1::2])
    search = Observation.where({"subject": f"Patient/{pid}"}).include("subject")  # (the element's name)
    assert search.construct().endswith("_include=Observation:subject")
    bundle = search.perform(server)
    assert {(e.search.mode, e.resource.resource_type) for e in bundle.entry} == {
        ("match", "Observation"), ("include", "Patient")}
