"""History `_at` (the versions current at that moment, or during that period, per resource) and partial dates
(`2024`, `2024-05`, `2024-05-31`) in `_since` and `_at` (both databases)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
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


def _versions(client: Any, url: str, **params: str) -> list[tuple[str, str]]:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    out = []
    for e in r.json().get("entry", []):
        ref = e["fullUrl"].split("/fhir/", 1)[1]
        out.append((ref, e["resource"]["meta"]["versionId"] if "resource" in e else "deleted"))
    return out


def _when(client: Any, url: str) -> datetime:
    return datetime.fromisoformat(client.get(url).json()["meta"]["lastUpdated"])


def _instant(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds")


def test_at_is_the_version_current_then(client):  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json=patient())
    ref = f"Patient/{r.json()['id']}"
    url = f"/fhir/{ref}"
    times = [_when(client, url)]
    for active in (True, False):
        time.sleep(0.01)
        body = client.get(url).json()
        assert client.put(url, json={**body, "active": active}).status_code == 200
        times.append(_when(client, url))
    history = f"{url}/_history"
    assert _versions(client, history, _at=_instant(times[1])) == [(ref, "2")]
    assert _versions(client, history, _at=_instant(times[0] + (times[1] - times[0]) / 2)) == [(ref, "1")]
    assert _versions(client, history, _at=_instant(times[2] + timedelta(days=1))) == [(ref, "3")]
    assert _versions(client, history, _at=_instant(times[0] - timedelta(seconds=1))) == []
    time.sleep(0.01)
    assert client.delete(url).status_code == 204
    assert _versions(client, history, _at=_instant(datetime.now(times[0].tzinfo) + timedelta(days=1))) == [
        (ref, "deleted")]
    assert _versions(client, history, _at=_instant(times[2])) == [(ref, "3")]


def test_at_over_a_type_gives_one_version_per_resource(client):  # type: ignore[no-untyped-def]
    ids = [client.post("/fhir/Patient", json=patient()).json()["id"] for _ in range(2)]
    for rid in ids:
        body = client.get(f"/fhir/Patient/{rid}").json()
        assert client.put(f"/fhir/Patient/{rid}", json={**body, "active": True}).status_code == 200
    later = datetime.now().astimezone() + timedelta(minutes=5)
    got = _versions(client, "/fhir/Patient/_history", _at=_instant(later))
    assert sorted(got) == sorted((f"Patient/{rid}", "2") for rid in ids)


def test_partial_dates_in_since_and_at(client):  # type: ignore[no-untyped-def]
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = client.get(f"/fhir/Patient/{rid}").json()
    client.put(f"/fhir/Patient/{rid}", json={**body, "active": True})
    url = f"/fhir/Patient/{rid}/_history"
    now = _when(client, f"/fhir/Patient/{rid}")
    year, month, day = f"{now.year}", f"{now.year}-{now.month:02d}", now.date().isoformat()
    both = [(f"Patient/{rid}", "2"), (f"Patient/{rid}", "1")]
    for value in (year, month, day):
        assert _versions(client, url, _since=value) == both, value
        assert _versions(client, url, _at=value) == both, value  # both were current at some time in it
    assert _versions(client, url, _since=str(now.year + 1)) == []
    assert _versions(client, url, _at=str(now.year - 1)) == []
    assert _versions(client, url, _at=f"{now.year + 1}-01") == [(f"Patient/{rid}", "2")]


@pytest.mark.parametrize(("param", "value"), [("_at", "2024-13"), ("_at", "2024-02-30"), ("_since", "banana"),
                                              ("_at", "24")])
def test_bad_dates_are_400(client, param, value):  # type: ignore[no-untyped-def]
    assert_outcome(client.get("/fhir/Patient/_history", params={param: value}), 400, param, value)


def test_a_hidden_resource_history_at_answers_as_missing(who):  # type: ignore[no-untyped-def]
    hidden = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "private")).json()["id"]
    for at in ("2026", "2030-01-01T00:00:00Z"):
        a = who["wes"].get(f"/fhir/Observation/{hidden}/_history", params={"_at": at})
        b = who["wes"].get(f"/fhir/Observation/{MISSING}/_history", params={"_at": at})
        assert a.status_code == b.status_code == 404
        assert a.text.replace(hidden, "ID") == b.text.replace(MISSING, "ID")
        types = who["wes"].get("/fhir/Observation/_history", params={"_at": at}).json()
        assert hidden not in str(types)
