"""`_sort` ascending and descending on every parameter type, on SQLite and PostgreSQL, checked against a
straightforward Python evaluation over the stored population (the oracle): a resource's key is its lowest
value ascending and its highest descending, a resource with no value comes last either way, ties by id.
Tokens sort by code (then system), never by id; a text-only concept has no code. Pages are walked through
the `next` links (keyset paging over the sort key)."""

from __future__ import annotations

import calendar
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
MISSING = object()


def post(client: Any, res: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res)
    assert r.status_code == 201, r.text
    return r.json()


def walk(client: Any, url: str) -> list[str]:
    ids: list[str] = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((lk["url"] for lk in body["link"] if lk["relation"] == "next"), "")
    return ids


def oracle(resources: list[dict[str, Any]], values: Callable[[dict[str, Any]], list[Any]], desc: bool) -> list[str]:
    """The expected order: by lowest (ascending) or highest (descending) value, no value last, then by id."""
    with_key, without = [], []
    for r in resources:
        vs = values(r)
        if vs:
            with_key.append(((max(vs) if desc else min(vs)), r["id"]))
        else:
            without.append(r["id"])
    with_key.sort(key=lambda kv: kv[1])  # ties by id ascending (a stable sort keeps it under the key sort)
    with_key.sort(key=lambda kv: kv[0], reverse=desc)
    return [i for _, i in with_key] + sorted(without)


def check(client: Any, rtype: str, name: str, resources: list[dict[str, Any]],
          values: Callable[[dict[str, Any]], list[Any]], where: str = "") -> None:
    assert len({tuple(values(r)) for r in resources}) > 3, "the population should have distinct keys"
    for desc in (False, True):
        url = f"/fhir/{rtype}?{where}_sort={'-' if desc else ''}{name}&_count=4"
        got = walk(client, url)
        assert got == oracle(resources, values, desc), (url, [values(r) for r in resources])


# -- token ----------------------------------------------------------------------------------------------
def _concept(i: int) -> dict[str, Any]:
    kinds = [
        {"coding": [{"system": LOINC, "code": "8867-4"}], "text": "Heart rate"},
        {"text": "a text-only concept"},  # no code: no token sort key
        {"coding": [{"system": SNOMED, "code": "271649006"}, {"system": LOINC, "code": "8480-6"}]},
        {"coding": [{"system": SNOMED, "code": "1234"}]},
        {"coding": [{"system": LOINC, "code": "1234"}]},  # the same code in another system: system breaks the tie
        {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
        {"coding": [{"code": "zz-local"}]},
    ]
    return kinds[i % len(kinds)]


def token_values(r: dict[str, Any]) -> list[Any]:
    return [(c["code"], c.get("system", "")) for c in r["code"].get("coding", []) if c.get("code")]


def test_sort_by_token_uses_code_then_system(client):  # type: ignore[no-untyped-def]
    pat = post(client, {"resourceType": "Patient", "name": [{"family": "Sorter"}]})
    obs = [post(client, {"resourceType": "Observation", "status": "final", "code": _concept(i),
                         "subject": {"reference": f"Patient/{pat['id']}"}}) for i in range(15)]
    check(client, "Observation", "code", obs, token_values)
    # the reported bug: ascending on a token must not be the order of ids
    asc = walk(client, "/fhir/Observation?_sort=code&_count=50")
    assert asc != sorted(o["id"] for o in obs)
    first = next(o for o in obs if o["id"] == asc[0])
    assert token_values(first)[0][0] == "1234"
    assert [token_values(o) for o in obs if o["id"] == asc[-1]] == [[]]  # text-only concepts come last


# -- string ---------------------------------------------------------------------------------------------
def _fold(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c)).casefold()


FAMILIES = ["Smith", "smythe", "Ämundsen", "Zed", "adams", "Nuñez", "O'Brien", "McDonald", "Émile", "ß-test"]


def string_values(r: dict[str, Any]) -> list[Any]:
    return [_fold(n["family"]) for n in r.get("name", []) if n.get("family")]


def test_sort_by_string_is_case_and_accent_free(client):  # type: ignore[no-untyped-def]
    pats = []
    for i in range(14):
        names = [{"family": FAMILIES[i % len(FAMILIES)]}]
        if i % 3 == 0:
            names.append({"family": FAMILIES[(i * 7 + 3) % len(FAMILIES)]})  # two names: min/max differ
        res: dict[str, Any] = {"resourceType": "Patient", "gender": "female"}
        if i % 5 != 4:  # some have no name at all
            res["name"] = names
        pats.append(post(client, res))
    check(client, "Patient", "family", pats, string_values)


# -- date -----------------------------------------------------------------------------------------------
def _day_range(day: str) -> tuple[int, int]:
    d = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    low = calendar.timegm(d.timetuple()) * 1_000_000
    return low, low + 86_400_000_000 - 1


def date_values_low(r: dict[str, Any]) -> list[Any]:
    if "effectiveDateTime" in r:
        return [_day_range(r["effectiveDateTime"])]
    if "effectivePeriod" in r:
        p = r["effectivePeriod"]
        return [(_day_range(p["start"])[0], _day_range(p["end"])[1])]
    return []


def test_sort_by_date_uses_low_ascending_and_high_descending(client):  # type: ignore[no-untyped-def]
    pat = post(client, {"resourceType": "Patient"})
    obs = []
    for i in range(13):
        res: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": f"d{i}"},
                               "subject": {"reference": f"Patient/{pat['id']}"}}
        if i % 4 == 0:  # a long period: it starts early but ends late
            res["effectivePeriod"] = {"start": f"20{10 + i:02d}-01-01", "end": f"20{30 - i // 4:02d}-12-31"}
        elif i % 4 != 3:
            res["effectiveDateTime"] = f"20{12 + (i * 5) % 11:02d}-0{1 + i % 9}-1{i % 10}"
        obs.append(post(client, res))

    for desc in (False, True):
        def key(r: dict[str, Any], desc: bool = desc) -> list[Any]:
            return [hi if desc else lo for lo, hi in date_values_low(r)]

        got = walk(client, f"/fhir/Observation?_sort={'-' if desc else ''}date&_count=4")
        assert got == oracle(obs, key, desc), desc


# -- number and quantity ----------------------------------------------------------------------------------
def test_sort_by_number(client):  # type: ignore[no-untyped-def]
    pat = post(client, {"resourceType": "Patient"})
    risks = []
    for i in range(12):
        res: dict[str, Any] = {"resourceType": "RiskAssessment", "status": "final",
                               "subject": {"reference": f"Patient/{pat['id']}"}}
        if i % 5 != 4:
            probs = [Decimal((i * 37) % 100) / 100]
            if i % 3 == 0:
                probs.append(Decimal((i * 11) % 100) / 1000)
            res["prediction"] = [{"probabilityDecimal": float(p)} for p in probs]
        risks.append(post(client, res))

    def values(r: dict[str, Any]) -> list[Any]:
        return [p["probabilityDecimal"] for p in r.get("prediction", [])]

    check(client, "RiskAssessment", "probability", risks, values)


def test_sort_by_quantity(client):  # type: ignore[no-untyped-def]
    pat = post(client, {"resourceType": "Patient"})
    obs = []
    for i in range(13):
        res: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                               "subject": {"reference": f"Patient/{pat['id']}"}}
        if i % 6 != 5:
            res["valueQuantity"] = {"value": [72.5, -3, 0.25, 1000, 72.49, 15][i % 6] + i,
                                    "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
        obs.append(post(client, res))

    def values(r: dict[str, Any]) -> list[Any]:
        return [r["valueQuantity"]["value"]] if "valueQuantity" in r else []

    check(client, "Observation", "value-quantity", obs, values)


# -- reference and uri -------------------------------------------------------------------------------------
def test_sort_by_reference(client):  # type: ignore[no-untyped-def]
    pats = [post(client, {"resourceType": "Patient"}) for _ in range(4)]
    obs = []
    for i in range(12):
        res: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": "ref"}}
        if i % 4 != 3:
            res["subject"] = {"reference": f"Patient/{pats[(i * 3) % 4]['id']}"}
        obs.append(post(client, res))

    def values(r: dict[str, Any]) -> list[Any]:
        return [r["subject"]["reference"]] if "subject" in r else []

    check(client, "Observation", "subject", obs, values, where="status=final&")


def test_sort_by_uri(client):  # type: ignore[no-untyped-def]
    libs = []
    for i in range(11):
        res: dict[str, Any] = {"resourceType": "Library", "status": "active", "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]}}
        if i % 4 != 2:
            res["url"] = ["http://example.org/b", "http://example.org/a/z", "urn:uuid:0f0e", "http://Example.org/C",
                          "https://example.org/a"][i % 5] + f"/{(i * 7) % 11}"
        libs.append(post(client, res))

    def values(r: dict[str, Any]) -> list[Any]:
        return [r["url"]] if "url" in r else []

    check(client, "Library", "url", libs, values)


# -- bad paths ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query,word", [
    ("_sort=nonsense", "nonsense"),
    ("_sort=code-value-quantity", "code-value-quantity"),  # a composite cannot be sorted on
    ("_sort=", "_sort"),
    ("_sort=code,,status", "_sort"),
])
def test_sort_errors_name_the_problem(client, query, word):  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/Observation?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and word in r.text
    lenient = client.get(f"/fhir/Observation?{query}", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == (400 if query.startswith("_sort=code,,") or query == "_sort=" else 200)
