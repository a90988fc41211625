"""Conditional read and vread (If-None-Match, If-Modified-Since: 304 Not Modified), and `_summary`/`_elements` on
read and vread: what a client gets, and a resource the caller may not see answering exactly as a missing one
(never a 304), on both databases."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest

from tests.api.support import assert_outcome, patient
from tests.policy.conftest import PEOPLE
from tests.policy.support import observation
from tests.workflows.support import As

MISSING = "00000000-0000-4000-8000-000000000000"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {short: As(client, auth_headers(user)) for short, user in PEOPLE.items()}


def _created(client: Any) -> tuple[str, Any]:
    r = client.post("/fhir/Patient", json=patient(birthDate="1970-01-01", text={
        "status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jo Smith</div>'}))
    assert r.status_code == 201, r.text
    return f"/fhir/Patient/{r.json()['id']}", r


def test_if_none_match(client):  # type: ignore[no-untyped-def]
    url, _ = _created(client)
    first = client.get(url)
    assert first.headers["ETag"] == 'W/"1"'
    for tag in ('W/"1"', '"1"', 'W/"9", W/"1"', "*"):
        r = client.get(url, headers={"If-None-Match": tag})
        assert r.status_code == 304, (tag, r.text)
        assert r.content == b""
        assert r.headers["ETag"] == 'W/"1"' and r.headers["Last-Modified"] == first.headers["Last-Modified"]
    assert client.get(url, headers={"If-None-Match": 'W/"2"'}).status_code == 200
    assert client.put(url, json={**first.json(), "active": True}).status_code == 200
    r = client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["active"] is True and r.headers["ETag"] == 'W/"2"'
    # vread: each version has its own tag
    assert client.get(f"{url}/_history/1", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    r = client.get(f"{url}/_history/1", headers={"If-None-Match": 'W/"2"'})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "1"


def test_if_modified_since(client):  # type: ignore[no-untyped-def]
    url, _ = _created(client)
    modified = parsedate_to_datetime(client.get(url).headers["Last-Modified"])
    for when, status in ((modified, 304), (modified + timedelta(days=1), 304), (modified - timedelta(seconds=1), 200)):
        r = client.get(url, headers={"If-Modified-Since": format_datetime(when, usegmt=True)})
        assert r.status_code == status, (when, r.text)
    assert client.get(f"{url}/_history/1", headers={
        "If-Modified-Since": format_datetime(modified, usegmt=True)}).status_code == 304
    # a date that cannot be read is ignored (RFC 9110); If-None-Match decides when both are sent
    assert client.get(url, headers={"If-Modified-Since": "yesterday"}).status_code == 200
    r = client.get(url, headers={"If-None-Match": 'W/"5"', "If-Modified-Since": format_datetime(modified, usegmt=True)})
    assert r.status_code == 200


def test_no_304_for_what_is_gone_or_errors(client):  # type: ignore[no-untyped-def]
    url, _ = _created(client)
    assert client.delete(url).status_code == 204
    assert_outcome(client.get(url, headers={"If-None-Match": "*"}), 410)
    assert_outcome(client.get(f"/fhir/Patient/{MISSING}", headers={"If-None-Match": "*"}), 404)


def test_a_hidden_resource_is_never_304(who):  # type: ignore[no-untyped-def]
    hidden = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "private")).json()["id"]
    wes = who["wes"]  # no care relationship with Paula
    for suffix in ("", "/_history/1"):
        for headers in ({"If-None-Match": 'W/"1"'}, {"If-None-Match": "*"},
                        {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, {}):
            a = wes.get(f"/fhir/Observation/{hidden}{suffix}", headers=headers)
            b = wes.get(f"/fhir/Observation/{MISSING}{suffix}", headers=headers)
            assert a.status_code == 404, a.text
            keep = ("content-type", "etag", "last-modified", "cache-control", "allow")
            assert (a.status_code, a.text.replace(hidden, "ID"), {k: a.headers.get(k) for k in keep}) == (
                b.status_code, b.text.replace(MISSING, "ID"), {k: b.headers.get(k) for k in keep})
    # someone who may see it gets the 304
    assert who["ada"].get(f"/fhir/Observation/{hidden}", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_summary_and_elements_on_read_and_vread(client):  # type: ignore[no-untyped-def]
    url, created = _created(client)
    full = created.json()
    r = client.get(f"{url}?_summary=true")
    assert r.status_code == 200
    got = r.json()
    assert "text" not in got and got["birthDate"] == "1970-01-01" and got["name"] == full["name"]
    assert SUBSETTED in got["meta"]["tag"] and got["meta"]["versionId"] == "1"
    got = client.get(f"{url}?_summary=text").json()
    assert set(got) == {"resourceType", "id", "meta", "text"} and SUBSETTED in got["meta"]["tag"]
    got = client.get(f"{url}?_summary=data").json()
    assert "text" not in got and got["birthDate"] == "1970-01-01" and SUBSETTED in got["meta"]["tag"]
    assert client.get(f"{url}?_summary=false").json() == full
    got = client.get(f"{url}/_history/1?_elements=birthDate,gender").json()
    assert set(got) == {"resourceType", "id", "meta", "birthDate", "gender"} and SUBSETTED in got["meta"]["tag"]
    got = client.get(f"{url}?_elements=Patient.name").json()
    assert set(got) == {"resourceType", "id", "meta", "name"}
    assert client.get(url).json() == full  # the stored resource is untouched
    assert_outcome(client.get(f"{url}?_summary=maybe"), 400, "_summary", "maybe")
    assert_outcome(client.get(f"{url}?_summary=count"), 400, "_summary=count", "searches")
    assert_outcome(client.get(f"{url}?_elements=na!me"), 400, "_elements")
    # the subset of a hidden resource is a 404 like any read of it
    assert_outcome(client.get(f"/fhir/Patient/{MISSING}?_summary=true"), 404)
