"""Plain element paths (`Type.a.b`, `(Type.a as T)`: nearly every parameter's expression) are walked natively
when indexing. Over every official R4 example, they give what the FHIRPath engine gives wherever the engine can
evaluate them; and where it cannot (`as` on several values, as in a blood pressure's two components), the
values are still indexed and found."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from fhirpathpy import compile as fp_compile
from fhirpathpy.models import models

from service.search.params import params_for
from service.search.plainpath import compile_plain
from tests.search.test_extract_shortcut import _resources


def _plain(values: list[Any]) -> str:
    """Values as JSON, without the engine's extras: XML-comment nodes it returns for `_element` siblings, and
    decimals for numbers."""
    def fix(v: Any) -> Any:
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    kept = [fix(v) for v in values if not (isinstance(v, dict) and set(v) <= {"fhir_comments", "extension", "id"})]
    return json.dumps(kept, sort_keys=True)


def test_plain_paths_give_what_the_fhirpath_engine_gives() -> None:
    checked, differ = 0, []
    for res in _resources():
        for param in params_for(res["resourceType"]).values():
            for expression, _ in param.expressions:
                native = compile_plain(expression)
                if native is None:
                    continue
                try:
                    expected = list(fp_compile(expression, models["r4"])(res))
                except ValueError:  # (the engine refuses `as` on several values; see the test below)
                    continue
                checked += 1
                if _plain(native(res)) != _plain(expected):
                    differ.append(f"{res['resourceType']}/{res.get('id')} {expression}")
    assert checked > 3_000
    assert not differ, differ[:10]


@pytest.mark.parametrize("expression,plain", [
    ("Observation.status", True),
    ("(Observation.value as Quantity)", True),
    ("Observation.component.code", True),
    ("(Observation.value as CodeableConcept).text", True),  # a cast, then plain members of that type
    ("(Observation.value as CodeableConcept).coding.code", True),
    ("(Observation.value as Quantity).value.extension", True),
    ("Observation.extension('https://example.org/x').value", True),  # our own extensions' parameters
    ("Observation.code | Observation.component.code", False),
    ("CarePlan.activity.detail.where(status = 'x')", False),
    ("Bundle.entry[0].resource", False),
    ("(Patient.name as HumanName)", False),  # a cast on an element that is not a choice: the engine decides
])
def test_which_expressions_are_plain(expression: str, plain: bool) -> None:
    assert (compile_plain(expression) is not None) is plain


def test_casts_keep_only_that_choice() -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 1}, "_status": {"extension": []},
           "component": [{"valueQuantity": {"value": 2}}, {"valueString": "x"}, {"valueQuantity": {"value": 3}}]}
    assert compile_plain("(Observation.value as Quantity)")(obs) == [{"value": 1}]  # type: ignore[misc]
    assert compile_plain("(Observation.value as CodeableConcept)")(obs) == []  # type: ignore[misc]
    assert compile_plain("Observation.status")(obs) == []  # type: ignore[misc]  (an extension is not a value)
    assert compile_plain("(Observation.component.value as Quantity)")(obs) == [{"value": 2}, {"value": 3}]  # type: ignore[misc]
    assert compile_plain("Observation.code")({"resourceType": "Patient", "code": {}}) == []  # type: ignore[misc]
    concept = {"resourceType": "Observation", "valueCodeableConcept": {"text": "Mild", "coding": [{"code": "a"}]}}
    assert compile_plain("(Observation.value as CodeableConcept).text")(concept) == ["Mild"]  # type: ignore[misc]
    assert compile_plain("(Observation.value as CodeableConcept).text")(obs) == []  # type: ignore[misc]
    marked = {"resourceType": "Observation", "extension": [
        {"url": "https://example.org/x", "valueReference": {"reference": "Organization/o"}},
        {"url": "https://example.org/y", "valueString": "other"}]}
    ext = compile_plain("Observation.extension('https://example.org/x').value")
    assert ext(marked) == [{"reference": "Organization/o"}]  # type: ignore[misc]
    assert ext({"resourceType": "Observation"}) == [] and ext({**marked, "resourceType": "Patient"}) == []  # type: ignore[misc]


def test_each_component_of_a_blood_pressure_is_found(client: Any, lenient_references: Any) -> None:
    # (Patient/pat-pat is not stored here: references must resolve unless SHAREDCARE_REFERENCES_LENIENT=1)
    bp = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/pat-pat"},
          "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
          "component": [
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
               "valueQuantity": {"value": 142, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
               "valueQuantity": {"value": 94, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}
    r = client.post("/fhir/Observation", json=bp)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    for query, found in [("component-value-quantity=142||mm[Hg]", True), ("component-value-quantity=94", True),
                         ("component-value-quantity=gt140", True), ("component-value-quantity=100", False),
                         ("component-code-value-quantity=http://loinc.org|8462-4$94", True)]:
        r = client.get(f"/fhir/Observation?{query}")
        assert r.status_code == 200, r.text
        ids = [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
        assert (oid in ids) is found, query
