"""The base specification's rules on write, straight through `validate_resource` (no database): the invalid
corpus (tests/fhir_profiles/invalid_corpus.py) is refused naming the element and the rule, the official
examples are accepted, and the one pass finds everything the fhir.resources R4B models found before it
replaced them on the write path (a seeded mutation run)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from service.fhir.outcome import OperationOutcomeError
from service.fhir.validation import model_issues, validate_resource
from service.validation.narrative import problems
from tests.conftest import DATA
from tests.fhir_profiles.invalid_corpus import CASES, XHTML

EXAMPLES = DATA / "fhir-r4-spec" / "examples"
UKCORE = DATA / "ukcore-examples"
KNOWN_INVALID = {"Questionnaire-qs1.json",  # items without linkId (data README)
                 "UKCore-Patient-BabyPatient-Example.json"}  # an NHS number failing modulus 11 (data README)


@pytest.mark.parametrize(("name", "resource", "path", "word"), CASES, ids=[c[0] for c in CASES])
def test_each_invalid_case_is_refused_naming_the_element_and_rule(name, resource, path, word):
    with pytest.raises(OperationOutcomeError) as info:
        validate_resource(copy.deepcopy(resource))
    err = info.value
    assert err.status in (400, 422)
    named = [i for i in err.issues if path in i.expression]
    assert named, f"{name}: no issue names {path}: {[i.expression for i in err.issues]}"
    assert any(word.lower() in i.diagnostics.lower() for i in named), [i.diagnostics for i in named]
    assert all(i.diagnostics.startswith(i.expression[0]) for i in err.issues if i.expression)


def test_the_corpus_is_broad():
    assert len(CASES) >= 50
    rules = " ".join(c[3] for c in CASES)
    for rule in ("ele-1", "ext-1", "per-1", "dom-2", "txt-1", "txt-2", "base64", "date", "required"):
        assert rule in rules


@pytest.mark.parametrize("folder", [EXAMPLES, UKCORE], ids=["r4-examples", "ukcore-examples"])
def test_valid_examples_are_accepted(folder):
    refused = []
    for path in sorted(folder.glob("*.json")):
        if path.name in KNOWN_INVALID:
            continue
        try:
            validate_resource(json.loads(path.read_text()))
        except OperationOutcomeError as err:
            refused.append(f"{path.name}: {err.diagnostics[:200]}")
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize("div", [
    f'<div {XHTML}><p>Plain <b>bold</b> <a href="https://example.org/x">link</a> <a name="anchor">a</a></p></div>',
    f'<div {XHTML}><table border="1"><tr><td colspan="2" style="color: red">x</td></tr></table></div>',
    f'<div {XHTML}><img src="data:image/png;base64,iVBORw0KGgo=" alt="dot"/></div>',
    f'<div {XHTML} xml:lang="en-GB" lang="en-GB"><ul><li>one</li></ul></div>',
    f'<div {XHTML}><a href="#section">jump</a> &amp; &#233;</div>',
])
def test_allowed_narratives_pass(div):
    assert problems(div) == []


@pytest.mark.parametrize("href", ["JaVaScRiPt:alert(1)", "\tjavascript:alert(1)", "vbscript:x", "data:text/html,x",
                                  "java&#10;script:alert(1)"])
def test_active_links_are_refused_however_written(href):
    got = problems(f'<div {XHTML}><a href="{href}">x</a></div>')
    assert got and got[0][0] == "txt-1", got


def test_billion_laughs_is_refused_before_parsing():
    div = ('<!DOCTYPE div [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
           f'<div {XHTML}>&b;</div>')
    assert problems(div) == [("txt-1", "a DOCTYPE, entity declaration or processing instruction is not allowed")]


def test_deep_nesting_is_refused_not_crashing():
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(3000):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    with pytest.raises(OperationOutcomeError) as info:
        validate_resource({"resourceType": "Patient", "extension": [ext]})
    assert info.value.status == 422


def _paths(node: Any, p: tuple[Any, ...] = ()) -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            if k != "resourceType":
                yield (*p, k)
                yield from _paths(v, (*p, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*p, i)
            yield from _paths(v, (*p, i))


def test_the_one_pass_finds_whatever_the_r4b_models_find():
    """1,500 seeded mutations of the official examples (a value replaced by a wrong type, an empty or odd value,
    or an element removed): wherever the models object, the one pass objects too."""
    from service.validation.structure import issues

    rng = random.Random(13)
    examples = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json")) if p.name not in KNOWN_INVALID]
    values = [1, "x", True, 1.5, [], {}, None, "", [1], {"a": 1}, "2020-01-01", -5, "  a", 2 ** 40]
    missed = []
    for _ in range(1500):
        res = copy.deepcopy(rng.choice(examples))
        paths = list(_paths(res))
        target = rng.choice(paths)
        node = res
        for k in target[:-1]:
            node = node[k]
        if rng.random() < 0.7 or isinstance(node, list):
            node[target[-1]] = rng.choice(values)
        else:
            del node[target[-1]]
        if model_issues(res) and not issues(res):
            missed.append((res["resourceType"], target, model_issues(res)[0].diagnostics[:120]))
    assert not missed, missed[:5]


def test_random_json_never_crashes_the_validator():
    """2,000 seeded random JSON documents shaped like resources (known and unknown keys, every JSON kind,
    nesting): each is accepted or refused with an OperationOutcomeError, never another exception (a 500)."""
    rng = random.Random(14)
    keys = ["name", "gender", "birthDate", "text", "div", "status", "extension", "url", "valueString", "contained",
            "identifier", "system", "value", "_birthDate", "id", "period", "start", "end", "coding", "code",
            "subject", "reference", "item", "linkId", "photo", "data", "resourceType", "x", "", "entry", "resource"]

    def anything(depth: int) -> Any:
        kind = rng.randrange(9 if depth < 5 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.choice([0, -1, 2 ** 40, 1.5, float("1e308")])
        if kind in (3, 4, 5):
            return rng.choice(["", " ", "x", "2020-13-01", "Patient/1", "<div/>", "\u00e9", "a" * 300,
                               f'<div {XHTML}><p>x</p></div>', "Patient", "urn:uuid:1"])
        if kind in (6, 7):
            return {rng.choice(keys): anything(depth + 1) for _ in range(rng.randrange(4))}
        return [anything(depth + 1) for _ in range(rng.randrange(3))]

    types = ["Patient", "Observation", "Questionnaire", "Bundle", "Extension", "Nope"]
    for _ in range(2000):
        doc = {k: anything(1) for k in rng.sample(keys, rng.randrange(1, 6))}
        doc["resourceType"] = rng.choice(types)
        try:
            validate_resource(doc)
        except OperationOutcomeError as err:
            assert err.status in (400, 422) and err.issues
