"""$meta (system, type, instance), $meta-add and $meta-delete: sets of profiles, tags and security labels; a change
is a new version through the write path, asking for what is already so writes nothing; what the caller may not
see answers as missing and never contributes to type or system $meta (both databases)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import assert_outcome, patient
from tests.policy.conftest import PEOPLE
from tests.policy.support import observation
from tests.workflows.support import As

MISSING = "00000000-0000-4000-8000-000000000000"
LOST = {"system": "urn:test:tags", "code": "paper-record-lost", "display": "Paper record lost"}
AUDITED = {"system": "urn:test:tags", "code": "audited"}
PROFILE = "http://example.org/StructureDefinition/my-patient"


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {short: As(client, auth_headers(user)) for short, user in PEOPLE.items()}


def meta_param(**meta: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


def returned(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters" and body["parameter"][0]["name"] == "return"
    return body["parameter"][0]["valueMeta"]  # type: ignore[no-any-return]


def test_meta_add_and_delete_on_an_instance(client):  # type: ignore[no-untyped-def]
    rid = client.post("/fhir/Patient", json=patient(meta={"tag": [AUDITED]})).json()["id"]
    url = f"/fhir/Patient/{rid}"
    got = returned(client.post(f"{url}/$meta-add", json=meta_param(tag=[LOST, {**AUDITED, "display": "x"}],
                                                                   profile=[PROFILE, PROFILE])))
    assert got["tag"] == [AUDITED, LOST] and got["profile"] == [PROFILE] and got["versionId"] == "2"
    assert client.get(url).json()["meta"]["tag"] == [AUDITED, LOST]
    # the same again changes nothing and writes no version
    got = returned(client.post(f"{url}/$meta-add", json=meta_param(tag=[LOST])))
    assert got["versionId"] == "2"
    assert returned(client.get(f"{url}/$meta")) == client.get(url).json()["meta"]
    got = returned(client.post(f"{url}/$meta-delete", json=meta_param(
        tag=[{"system": "urn:test:tags", "code": "audited", "display": "ignored"}, {"system": "urn:x", "code": "none"}],
        profile=[PROFILE])))
    assert got["tag"] == [LOST] and "profile" not in got and got["versionId"] == "3"
    history = client.get(f"{url}/_history").json()["entry"]
    assert [e["resource"]["meta"]["versionId"] for e in history] == ["3", "2", "1"]
    assert history[-1]["resource"]["meta"]["tag"] == [AUDITED]  # earlier versions stay as they were


def test_type_and_system_meta(client):  # type: ignore[no-untyped-def]
    client.post("/fhir/Patient", json=patient(meta={"tag": [LOST], "profile": [PROFILE]}))
    client.post("/fhir/Patient", json=patient(meta={"tag": [LOST, AUDITED]}))
    client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                           "meta": {"security": [{"system": "urn:test:sec", "code": "S"}]}})
    got = returned(client.get("/fhir/Patient/$meta"))
    assert got == {"profile": [PROFILE], "tag": [AUDITED, LOST]}
    got = returned(client.get("/fhir/$meta"))
    assert got["tag"] == [AUDITED, LOST] and got["security"] == [{"system": "urn:test:sec", "code": "S"}]
    assert returned(client.post("/fhir/Encounter/$meta")) == {}


@pytest.mark.parametrize(("body", "words"), [
    ({"resourceType": "Patient"}, ["Parameters"]),
    ({"resourceType": "Parameters", "parameter": []}, ["'meta'"]),
    (meta_param(tag=[{"system": "urn:x"}]), ["meta.tag", "code"]),
    (meta_param(profile=[""]), ["meta.profile"]),
    (meta_param(tag={"code": "x"}), ["meta.tag"]),
])
def test_bad_input_is_400(client, body, words):  # type: ignore[no-untyped-def]
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert_outcome(client.post(f"/fhir/Patient/{rid}/$meta-add", json=body), 400, *words)
    assert client.get(f"/fhir/Patient/{rid}").json()["meta"]["versionId"] == "1"


def test_errors(client):  # type: ignore[no-untyped-def]
    assert_outcome(client.post(f"/fhir/Patient/{MISSING}/$meta-add", json=meta_param(tag=[LOST])), 404)
    assert_outcome(client.get(f"/fhir/Patient/{MISSING}/$meta"), 404)
    assert_outcome(client.get("/fhir/Patient/x/$meta-add"), 405, "$meta-add")
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert_outcome(client.post(f"/fhir/Patient/{rid}/$meta-add", json=meta_param(tag=[LOST]),
                               headers={"If-Match": 'W/"4"'}), 412, "not 4")
    client.delete(f"/fhir/Patient/{rid}")
    assert_outcome(client.post(f"/fhir/Patient/{rid}/$meta-delete", json=meta_param(tag=[LOST])), 410)
    assert_outcome(client.post("/fhir/AuditEvent/x/$meta-add", json=meta_param(tag=[LOST])), 405, "append-only")


def test_hidden_is_missing_and_never_counted(who):  # type: ignore[no-untyped-def]
    secret = {"system": "urn:test:tags", "code": "only-for-paulas-team"}
    res = observation("pat-paula", "private")
    res["meta"] = {"tag": [secret]}
    hidden = who["ada"].post("/fhir/Observation", json=res).json()["id"]
    wes = who["wes"]  # no care relationship with Paula
    for path, method, body in (("$meta", "get", None), ("$meta-add", "post", meta_param(tag=[LOST])),
                               ("$meta-delete", "post", meta_param(tag=[secret]))):
        kw = {"json": body} if body else {}
        a = getattr(wes, method)(f"/fhir/Observation/{hidden}/{path}", **kw)
        b = getattr(wes, method)(f"/fhir/Observation/{MISSING}/{path}", **kw)
        assert a.status_code == b.status_code == 404
        assert a.text.replace(hidden, "ID") == b.text.replace(MISSING, "ID")
    for url in ("/fhir/Observation/$meta", "/fhir/$meta"):
        assert secret not in returned(wes.get(url)).get("tag", []), url
        assert secret in returned(who["ada"].get(url)).get("tag", []), url
    assert who["ada"].get(f"/fhir/Observation/{hidden}").json()["meta"]["versionId"] == "1"
