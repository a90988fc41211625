"""Parameters searched over other parameters' rows (service/search/derived.py) lose nothing: over every official
R4 example and the Synthea patients' resources, the rows each would have had of its own are exactly the rows it is
searched over. (Searching them is checked against an oracle in test_search_composite.py and test_search_oracle.py,
on both databases.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.search import derived
from service.search import extract as ex
from service.search.composite import composites_for
from service.search.indexer import index_rows
from tests.conftest import DATA
from tests.search.test_extract_shortcut import _resources

BASE = "http://testserver/fhir"
Rows = dict[str, set[tuple[Any, ...]]]  # param -> its rows without the name


def _synthea() -> list[dict[str, Any]]:
    out = []
    for path in sorted((DATA / "synthea-r4").glob("patient-*.json")):
        out += [e["resource"] for e in json.loads(path.read_text()).get("entry", [])]
    return out


def _by_param(rows: dict[str, list[dict[str, Any]]]) -> Rows:
    out: Rows = {}
    for table, rs in rows.items():
        for r in rs:
            if "param" in r:
                out.setdefault(r["param"], set()).add((table,) + tuple(v for k, v in sorted(r.items()) if k != "param"))
    return out


@pytest.fixture(scope="module")
def observations() -> list[dict[str, Any]]:
    found = [r for r in _resources() + _synthea() if r["resourceType"] == "Observation"]
    assert len(found) > 500 and sum(1 for r in found if r.get("component")) > 50
    return found


def _every_row(resource: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Rows:
    """The rows with nothing derived: every parameter and composite its own."""
    with monkeypatch.context() as m:
        m.setattr(ex, "sources", lambda rtype: {})
        m.setattr(ex, "_PLANS", {})
        m.setattr(derived, "stored_composites", lambda rtype: list(composites_for(rtype).values()))
        return _by_param(ex.extract(resource, BASE))


def test_what_is_derived_for_observation() -> None:
    assert derived.sources("Observation") == {
        "combo-code": ("code", "component-code"),
        "combo-data-absent-reason": ("component-data-absent-reason", "data-absent-reason"),
        "combo-value-concept": ("component-value-concept", "value-concept"),
        "combo-value-quantity": ("component-value-quantity", "value-quantity")}
    assert derived.derived_composite("Observation", "code-value-quantity") == derived.Derived(
        params=("code", "value-quantity"))
    assert derived.derived_composite("Observation", "combo-code-value-quantity") == derived.Derived(
        either=("code-value-quantity", "component-code-value-quantity"))
    # value-string also reads a CodeableConcept's text: the composite keeps rows of its own
    assert derived.derived_composite("Observation", "code-value-string") is None
    assert derived.sources("Patient") == {} and derived.sources(None) == {}


def test_derived_rows_are_their_sources_rows(observations: list[dict[str, Any]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plain = derived.sources("Observation")
    comps = composites_for("Observation")
    checked = 0
    for obs in observations:
        every = _every_row(obs, monkeypatch)
        stored = _by_param(ex.extract(obs, BASE))
        assert not set(stored) & set(plain), obs.get("id")
        for code, names in plain.items():  # the union of its sources
            assert every.get(code, set()) == set().union(*(every.get(n, set()) for n in names)), (obs.get("id"), code)
        for code, comp in comps.items():
            how = derived.derived_composite("Observation", code)
            mine = {p: rs for p, rs in every.items() if p.startswith(code + "~")}
            if how is None:
                assert {p: rs for p, rs in stored.items() if p.startswith(code + "~")} == mine
            elif how.params:  # the resource's own element: each component is its parameter's rows, when all have some
                assert not any(p.startswith(code + "~") for p in stored)
                theirs = [every.get(n, set()) for n in how.params]
                want = {comp.param(k, 0): rs for k, rs in enumerate(theirs)} if all(theirs) else {}
                assert mine == want, (obs.get("id"), code)
                checked += bool(want)
            else:  # element 0 is the resource (the first composite), element i + 1 the i-th component (the second)
                own, parts = (comps[c] for c in how.either)
                want = {comp.param(k, 0): rs for p, rs in every.items() for k in range(len(comp.components))
                        if p == own.param(k, 0)}
                want |= {comp.param(k, i + 1): rs for p, rs in every.items() for k in range(len(comp.components))
                         for i in range(31) if p == parts.param(k, i)}
                assert mine == want, (obs.get("id"), code)
    assert checked > 100


def test_an_observation_writes_eight_index_rows() -> None:
    obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
           "effectiveDateTime": "2026-01-15T09:00:00Z",
           "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    rows = index_rows("Observation", "o", obs, BASE, ["p"])
    assert sorted(r.get("param", t) for t, rs in rows.items() for r in rs) == [
        "code", "compartment", "date", "patient", "status", "subject", "text", "value-quantity"]
