"""A.10: request mode (planning a search) and its invariant.

Invariant: for every resource r, ``filter_allows(plan, r) == decide(resource=r).permitted`` where
``plan = decide(resource=None)``. Checked exhaustively on the worked cases' consents over a grid of
actors, purposes and resources, and with hypothesis on generated consents. Plus the shapes of the
obligations (codes / exceptAnyOfCodes / allOf) and the DENY rules of request mode.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import (
    DEFAULT_CONFIG,
    Actor,
    Config,
    Request,
    ResourceFacts,
    decide,
    filter_allows,
    parse_consent,
)
from consent.parse import ParsedConsent
from tests.consent._builders import (
    BTG_MEMBER,
    DR_A,
    NOW,
    THE_PATIENT,
    consent,
    prov,
    related_person,
    request_mode,
    resource,
    user_at,
)
from tests.consent.test_worked_cases import ROWS

JOY = related_person("joy")
ACTORS: list[Actor] = [DR_A, BTG_MEMBER, user_at("54"), user_at("gp5"), user_at("uni"), JOY, THE_PATIENT,
                       Actor(kind="system", keys=frozenset({"Device/gp-system", "Organization/gp5"}))]
PURPOSES: list[tuple[str, ...]] = [("TREAT",), ("ETREAT",), ("BTG",), ("HRESCH",), ("HMARKT",), ("TREAT", "HRESCH"), ()]
D2018 = datetime(2018, 3, 1, tzinfo=UTC)
LATE_2018 = datetime(2018, 6, 30, 23, 30, tzinfo=UTC)
GRID: list[ResourceFacts] = [
    resource(t, "o1", labels, codes, author, date, related)
    for t, labels, codes, author, date, related in itertools.product(
        ("MedicationStatement", "Observation"),
        ((), ("R",), ("PSY", "R"), ("N", "NOPAT"), ("V", "HIV")),
        ((), ("http://loinc.org|42828-4",)),
        (None, "gp5", "rr8", "f001"),
        (None, D2018, LATE_2018),
        ((), ("Task/t3",)),
    )
]


def check_invariant(req: Request, consents: list[ParsedConsent], config: Config,
                    resources: list[ResourceFacts]) -> None:
    plan = decide(replace(req, resource=None), consents, config)
    assert plan.verdict == "DENY" or plan.basis != "rule:too-complex"
    for r in resources:
        if req.resource_type and r.type != req.resource_type:
            continue
        expected = decide(replace(req, resource=r, resource_type=None), consents, config).permitted
        assert filter_allows(plan, r) == expected, (plan, r, decide(replace(req, resource=r), consents, config))


CONSENT_SETS = {tuple(sorted(c["id"] + repr(c) for c in p.values[0].consents)): p.values[0].consents for p in ROWS}


@pytest.mark.parametrize("consents", list(CONSENT_SETS.values()), ids=[
    "+".join(c["id"] for c in cs) or "none" for cs in CONSENT_SETS.values()])
def test_invariant_exhaustive_on_worked_case_consents(consents: tuple[dict[str, Any], ...]) -> None:
    parsed = [parse_consent(c) for c in consents]
    runs = [(p, DEFAULT_CONFIG) for p in PURPOSES] + [(("BTG",), Config(btg_override=False))]
    for actor, (purposes, config), rtype in itertools.product(ACTORS, runs, (None, "MedicationStatement")):
        req = request_mode(actor, purposes=purposes, ndoo=True, resource_type=rtype)
        check_invariant(req, parsed, config, GRID[::11])


# ---- obligation shapes and request-mode DENY ----------------------------------------------------------

def codes_of(features: Any) -> set[str]:
    return {f.code for f in features}


def test_codes_form_case_13() -> None:
    d = decide(request_mode(), [consent("c", prov("permit", prov("deny", labels=("PSY",))))])
    [o] = d.obligations
    assert (d.verdict, o.kind, o.form, codes_of(o.codes)) == ("PERMIT", "REDACT", "codes", {"PSY"})


def test_except_any_of_form() -> None:
    c = consent("c", prov("deny", prov("permit", classes=("Observation",))))
    d = decide(request_mode(JOY), [c])
    nopat, o = d.obligations  # a proxy never sees NOPAT (2a); the consent keeps only Observations
    assert (nopat.basis, nopat.form, codes_of(nopat.codes)) == ("rule:nopat", "codes", {"NOPAT"})
    assert (d.verdict, o.form, codes_of(o.except_any_of_codes)) == ("PERMIT", "exceptAnyOfCodes", {"Observation"})
    assert o.unless_authored_by == frozenset()  # a proxy has no own-record exemption


def test_all_of_form_case_15() -> None:
    c = consent("c", prov("permit", prov("deny", labels=("R",), classes=("MedicationStatement",))))
    d = decide(request_mode(), [c])
    [o] = d.obligations
    assert o.form == "allOf"
    assert sorted((sorted(codes_of(x.any_of)), x.negate) for x in o.all_of) == [
        (["MedicationStatement"], False), (["R"], False)]


def test_nested_exception_gives_negated_condition() -> None:
    c = consent("c", prov("permit", prov("deny", prov("permit", labels=("N",)), classes=("MedicationStatement",))))
    [o] = decide(request_mode(), [c]).obligations
    assert sorted((sorted(codes_of(x.any_of)), x.negate) for x in o.all_of) == [
        (["MedicationStatement"], False), (["N"], True)]


def test_requested_class_that_is_redacted_denies() -> None:
    c = consent("c", prov("permit", prov("deny", classes=("MedicationStatement",)), actors=("RelatedPerson/joy",)))
    assert decide(request_mode(JOY, resource_type="MedicationStatement"), [c]).verdict == "DENY"
    typed_other = decide(request_mode(JOY, resource_type="Observation"), [c])
    assert typed_other.verdict == "PERMIT"
    assert [o.basis for o in typed_other.obligations] == ["rule:nopat"]


def test_deny_carries_no_obligations_and_nothing_permitted() -> None:
    d = decide(request_mode(JOY), [consent("c", prov("deny"))])
    assert (d.verdict, d.basis, d.obligations) == ("DENY", "Consent/c", ())


def test_own_record_keeps_a_fully_objected_search_open() -> None:
    """Rule 2c in request mode: root(deny) still lets Dr A's organisation find what it wrote."""
    d = decide(request_mode(), [consent("c", prov("deny"))])
    [o] = d.obligations
    assert (d.verdict, o.form, o.all_of, o.basis) == ("PERMIT", "allOf", (), "Consent/c")
    assert filter_allows(d, resource(author="rr8")) and not filter_allows(d, resource(author="gp5"))


def test_patient_request_mode_redacts_nopat() -> None:
    d = decide(request_mode(THE_PATIENT, purposes=()), [consent("c", prov("deny"))])
    [o] = d.obligations
    assert (d.verdict, d.basis, codes_of(o.codes)) == ("PERMIT", "rule:patient-own-record", {"NOPAT"})


def test_request_mode_btg_sets_break_glass() -> None:
    d = decide(request_mode(purposes=("BTG",)), [consent("c", prov("permit", prov("deny", labels=("R",))))])
    assert (d.verdict, d.basis, d.obligations, d.break_glass) == ("PERMIT", "Consent/c", (), True)
    assert any("break-glass overrides Consent/c" in r for r in d.reasons)


def test_request_mode_btg_without_need_is_not_break_glass() -> None:
    d = decide(request_mode(purposes=("BTG",)), [])
    assert (d.verdict, d.break_glass) == ("PERMIT", False)


# ---- generated consents (hypothesis) ----------------------------------------------------------------

REQUESTER_KEYS = ["Organization/rr8", "Organization/54", "Practitioner/dr-a", "Group/btg-users",
                  "RelatedPerson/joy", "https://fhir.nhs.uk/Id/ods-organization-code|RR8"]


@st.composite
def provisions(draw: st.DrawFn, depth: int = 0, root: bool = False) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["labels"] = tuple(draw(st.sets(st.sampled_from(["R", "V", "PSY", "N", "HIV"]), min_size=1, max_size=2)))
    if draw(st.integers(0, 3)) == 0:
        kw["classes"] = tuple(draw(st.sets(st.sampled_from(["MedicationStatement", "Observation"]), min_size=1)))
    if draw(st.integers(0, 4)) == 0:
        kw["loinc"] = ("42828-4",)
    if draw(st.integers(0, 3)) == 0:
        kw["purposes"] = tuple(draw(st.sets(st.sampled_from(["TREAT", "ETREAT", "BTG", "HRESCH"]), min_size=1)))
    if draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            kw["actors"] = tuple(draw(st.sets(st.sampled_from(REQUESTER_KEYS), min_size=1, max_size=2)))
        else:
            kw["actors"], kw["role"] = (draw(st.sampled_from(["Organization/gp5", "Organization/f001"])),), "CST"
    if draw(st.integers(0, 5)) == 0:
        kw["data_period"] = ("2018-01-01", "2018-06-30")
    if draw(st.integers(0, 5)) == 0:
        kw["data"] = (draw(st.sampled_from([("related", "Task/t3"), ("instance", "Observation/o1"),
                                            ("authoredby", "Organization/gp5")])),)
    if draw(st.integers(0, 6)) == 0:
        kw["period"] = draw(st.sampled_from([("2019-01-01", "2030"), ("2010", "2016-01-01")]))
    kids = [] if depth >= 2 else draw(st.lists(provisions(depth + 1), max_size=2 if depth else 3))
    ptype = draw(st.sampled_from(["permit", "deny"] + ([None] if root else [])))
    if root and ptype is None and draw(st.booleans()):
        ptype = "deny"
    return prov(ptype, *kids, **kw)


@st.composite
def consent_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 3))
    return [consent(f"c{i}", draw(provisions(root=True)),
                    draw(st.sampled_from(["2023-01-10", "2024-01-01", "2024-03-01"])),
                    scope=draw(st.sampled_from(["patient-privacy", "patient-privacy", "research"])))
            for i in range(n)]


resources = st.builds(
    resource,
    rtype=st.sampled_from(["MedicationStatement", "Observation", "Immunization"]),
    rid=st.sampled_from(["o1", "o2"]),
    labels=st.sets(st.sampled_from(["R", "V", "PSY", "N", "HIV", "NOPAT"]), max_size=3).map(tuple),
    codes=st.sampled_from([(), ("http://loinc.org|42828-4",)]),
    author=st.sampled_from([None, "gp5", "rr8", "f001", "54"]),
    date=st.sampled_from([None, D2018, LATE_2018, NOW]),
    related=st.sampled_from([(), ("Task/t3",)]),
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(consents=consent_sets(), actor=st.sampled_from(ACTORS), purposes=st.sampled_from(PURPOSES),
       ndoo=st.booleans(), override=st.booleans(), action=st.sampled_from(["access", "correct"]),
       rtype=st.sampled_from([None, None, "MedicationStatement"]), sample=st.lists(resources, min_size=1, max_size=25))
def test_invariant_on_generated_consents(consents: list[dict[str, Any]], actor: Actor, purposes: tuple[str, ...],
                                         ndoo: bool, override: bool, action: str, rtype: str | None,
                                         sample: list[ResourceFacts]) -> None:
    parsed = [parse_consent(c) for c in consents]
    req = request_mode(actor, purposes=purposes, ndoo=ndoo, action=action, resource_type=rtype)
    check_invariant(req, parsed, Config(btg_override=override), sample + GRID[::17])
