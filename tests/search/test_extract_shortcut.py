"""Index extraction skips a parameter expression whose leading element path is absent from the resource.
Over every official R4 example (and the resources they contain), the rows with the shortcut equal the rows
from evaluating every expression."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.search import extract as ex
from tests.conftest import DATA

EXAMPLES = sorted((DATA / "fhir-r4-spec" / "examples").glob("*.json"))


def _rows(resource: dict[str, Any]) -> dict[str, list[str]]:
    rows = ex.extract(resource, "http://testserver/fhir")
    return {k: sorted(repr(sorted(r.items())) for r in v) for k, v in rows.items() if v}


def _resources() -> list[dict[str, Any]]:
    out = []
    for path in EXAMPLES:
        res = json.loads(path.read_text())
        out.append(res)
        out += [c for c in res.get("contained", []) if isinstance(c, dict) and "resourceType" in c]
        if res["resourceType"] == "Bundle":
            out += [e["resource"] for e in res.get("entry", []) if isinstance(e.get("resource"), dict)]
    return out


def test_shortcut_gives_the_same_rows_as_evaluating_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = _resources()
    assert len(resources) > 140
    fast = [_rows(r) for r in resources]
    monkeypatch.setattr(ex, "can_match", lambda expression, resource: True)
    slow = [_rows(r) for r in resources]
    differ = [f"{r['resourceType']}/{r.get('id')}" for r, a, b in zip(resources, fast, slow, strict=True) if a != b]
    assert not differ, differ


@pytest.mark.parametrize("expression,members", [
    ("Patient.name.family", ("name", "family")),
    ("(Observation.value as Quantity)", ("value",)),
    ("Bundle.entry[0].resource", ("entry",)),
    ("CarePlan.activity.detail.where(status = 'x')", ("activity", "detail")),
    ("Patient.extension('http://example.org')", ()),
    ("Observation.code | Observation.component.code", ()),
])
def test_leading_path(expression: str, members: tuple[str, ...]) -> None:
    assert ex._path_members(expression) == members


def test_choice_elements_and_primitive_extensions_count_as_present() -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 1}, "_status": {"extension": []}}
    assert ex.can_match("(Observation.value as Quantity)", obs)
    assert ex.can_match("Observation.status", obs)
    assert not ex.can_match("Observation.code", obs)
    assert ex.can_match("Patient.name.family", {"name": [{"given": ["a"]}, {"family": "b"}]})
    assert not ex.can_match("Patient.name.family", {"name": [{"given": ["a"]}]})
