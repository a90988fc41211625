"""Patient/$everything at type level and for one patient: start/end (care dates), _since, _type, _count and paging;
AuditEvents left out unless _type names them; a hidden patient answers as a missing one and hidden records never
appear (both databases)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import assert_outcome, patient
from tests.policy.conftest import PEOPLE
from tests.policy.support import observation
from tests.workflows.support import As

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {short: As(client, auth_headers(user)) for short, user in PEOPLE.items()}


def _post(client: Any, res: dict[str, Any]) -> str:
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return f"{res['resourceType']}/{r.json()['id']}"


def _obs(pid: str, when: str, performer: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": f"seen {when}"},
                           "subject": {"reference": pid}, "effectiveDateTime": when}
    if performer:
        res["performer"] = [{"reference": performer}]
    return res


def _all(client: Any, url: str) -> tuple[list[str], list[dict[str, Any]]]:
    refs, bundles = [], []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        bundles.append(body)
        refs += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry", [])
                 if e.get("search", {}).get("mode") != "outcome"]
        nxt = [lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"]
        url = nxt[0].split("testserver", 1)[-1] if nxt else ""
    return refs, bundles


@pytest.fixture
def record(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    doc = _post(client, {"resourceType": "Practitioner", "name": [{"family": "Who"}]})
    a = _post(client, patient())
    b = _post(client, patient(name=[{"family": "Other"}]))
    return {"doc": doc, "a": a, "b": b,
            "a2020": _post(client, _obs(a, "2020-03-01", doc)), "a2024": _post(client, _obs(a, "2024-06-01")),
            "b2024": _post(client, _obs(b, "2024-02-01")),
            "enc": _post(client, {"resourceType": "Encounter", "status": "finished",
                                  "class": {"code": "AMB"}, "subject": {"reference": b}})}


def test_type_level_covers_every_patient_paged(client, record):  # type: ignore[no-untyped-def]
    refs, bundles = _all(client, "/fhir/Patient/$everything?_count=2")
    assert set(record.values()) <= set(refs)
    assert len(bundles) >= 3  # paged
    assert not [r for r in refs if r.startswith("AuditEvent/")]
    assert len([r for r in refs if r != record["doc"]]) == len(set(refs) - {record["doc"]})  # no duplicates


def test_start_end_since_and_type(client, record):  # type: ignore[no-untyped-def]
    a = record["a"].split("/")[1]
    refs, _ = _all(client, f"/fhir/Patient/{a}/$everything?start=2024-01-01&end=2024-12-31")
    assert record["a2024"] in refs and record["a2020"] not in refs and record["a"] in refs
    refs, _ = _all(client, f"/fhir/Patient/{a}/$everything?end=2021")
    assert record["a2020"] in refs and record["doc"] in refs and record["a2024"] not in refs
    refs, _ = _all(client, "/fhir/Patient/$everything?start=2024-01&_type=Observation")
    assert set(refs) == {record["a2024"], record["b2024"]}
    refs, _ = _all(client, "/fhir/Patient/$everything?_since=2000&_type=Encounter,Patient")
    assert set(refs) == {record["a"], record["b"], record["enc"]}
    refs, _ = _all(client, "/fhir/Patient/$everything?_since=2999-01-01T00:00:00Z")
    assert refs == []


def test_audit_events_only_when_asked(client, record):  # type: ignore[no-untyped-def]
    a = record["a"].split("/")[1]
    client.get(f"/fhir/{record['a']}")  # an access about a (audited)
    refs, _ = _all(client, f"/fhir/Patient/{a}/$everything")
    assert not [r for r in refs if r.startswith("AuditEvent/")]
    refs, bundles = _all(client, f"/fhir/Patient/{a}/$everything?_type=AuditEvent&_count=2")
    assert refs and all(r.startswith("AuditEvent/") for r in refs)
    assert len(bundles) > 1  # paged, its links coming back here
    events = [e["resource"] for b in bundles for e in b.get("entry", [])]
    assert all(record["a"] in str(ev) for ev in events)
    refs, _ = _all(client, f"/fhir/Patient/{a}/$everything?_type=Observation,AuditEvent&_count=1")
    firsts = [r for r in refs if not r.startswith("AuditEvent/")]
    assert set(firsts) >= {record["a2020"], record["a2024"]}
    assert refs[:len(firsts)] == firsts and len(refs) > len(firsts)  # the record, then the AuditEvents
    refs, _ = _all(client, "/fhir/Patient/$everything?_type=AuditEvent&_count=50")
    assert refs and all(r.startswith("AuditEvent/") for r in refs)


@pytest.mark.parametrize(("query", "status", "words"), [
    ("start=banana", 400, ["start", "banana"]),
    ("end=2024-13-01", 400, ["end"]),
    ("start=2024-05-01&end=2024-01-01", 400, ["start is after end"]),
    ("_type=Nonsense", 400, ["Nonsense"]),
    ("colour=blue", 400, ["colour"]),
    ("_since=yesterday", 400, ["_since"]),
])
def test_errors(client, record, query, status, words):  # type: ignore[no-untyped-def]
    for base in ("/fhir/Patient/$everything", f"/fhir/{record['a']}/$everything"):
        assert_outcome(client.get(f"{base}?{query}"), status, *words)


def test_hidden_patient_and_records(who):  # type: ignore[no-untyped-def]
    hidden_obs = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "private")).json()["id"]
    wes = who["wes"]  # no care relationship with Paula
    a = wes.get("/fhir/Patient/pat-paula/$everything?start=2020")
    b = wes.get(f"/fhir/Patient/{MISSING}/$everything?start=2020")
    assert a.status_code == b.status_code == 404
    assert a.text.replace("pat-paula", "ID") == b.text.replace(MISSING, "ID")
    refs, _ = _all(wes.client, "/fhir/Patient/$everything?_count=100")  # (the admin's token: the client's own)
    assert f"Observation/{hidden_obs}" in refs
    url = "/fhir/Patient/$everything?_count=100"
    seen: list[str] = []
    while url:
        r = wes.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in body.get("entry", [])]
        nxt = [lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"]
        url = nxt[0].split("testserver", 1)[-1] if nxt else ""
    assert f"Observation/{hidden_obs}" not in seen and "Patient/pat-paula" not in seen
