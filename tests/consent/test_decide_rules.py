"""Rules beyond the worked cases: hard rules, defaults by actor kind, purposes, and the dataclasses' guards."""

from __future__ import annotations

import pytest

from consent import (
    Actor,
    Config,
    Decision,
    Feature,
    Obligation,
    ResourceFacts,
    decide,
    filter_allows,
    parse_consent,
)
from consent import codes as c
from tests.consent._builders import (
    DR_A,
    THE_PATIENT,
    consent,
    prov,
    related_person,
    request,
    request_mode,
    resource,
    user_at,
)

ADMIN = Actor(kind="admin", keys=frozenset({"Practitioner/ada"}))
GP_SYSTEM = Actor(kind="system", keys=frozenset({"Device/gp-system", "Organization/gp5"}))
OBJECTION = consent("c", prov("deny"))
OTHER_PATIENT = Actor(kind="patient", keys=frozenset({"Patient/p2"}))


@pytest.mark.parametrize(("actor", "purposes", "ndoo", "verdict", "basis"), [
    (ADMIN, ("TREAT",), False, "PERMIT", "rule:admin"),
    (ADMIN, (), False, "PERMIT", "rule:admin"),
    (ADMIN, ("HRESCH",), True, "DENY", "Consent/c"),  # secondary use is never bypassed
    (GP_SYSTEM, ("TREAT",), False, "PERMIT", "rule:own-record"),  # the R0 resource is GP5's
    (user_at("ryj"), (), False, "DENY", "Consent/c"),  # no purpose: a purpose-free root still applies
    (THE_PATIENT, (), False, "PERMIT", "rule:patient-own-record"),
    (OTHER_PATIENT, (), False, "DENY", "Consent/c"),  # another patient is a proxy
])
def test_hard_rules_with_an_objection(actor: Actor, purposes: tuple[str, ...], ndoo: bool, verdict: str,
                                      basis: str) -> None:
    d = decide(request(actor, purposes=purposes, ndoo=ndoo), [OBJECTION])
    assert (d.verdict, d.basis) == (verdict, basis)


@pytest.mark.parametrize(("actor", "purposes", "action", "verdict", "basis"), [
    (GP_SYSTEM, ("TREAT",), "access", "PERMIT", "default:direct-care"),
    (user_at("ryj"), (), "access", "DENY", "default:no-basis"),
    (user_at("ryj"), ("HMARKT",), "access", "DENY", "default:no-basis"),
    (user_at("ryj"), ("HOPERAT",), "access", "PERMIT", "default:secondary-use"),
    (user_at("ryj"), ("http://example.org/purpose|TREAT",), "access", "DENY", "default:no-basis"),
    (related_person("joy"), ("TREAT",), "access", "DENY", "default:proxy"),
    (related_person("joy"), ("HRESCH",), "access", "DENY", "default:proxy"),
    (THE_PATIENT, (), "correct", "DENY", "default:no-basis"),  # 2b is about reading
    (Actor(kind="ig"), ("TREAT",), "access", "DENY", "default:no-basis"),
])
def test_defaults(actor: Actor, purposes: tuple[str, ...], action: str, verdict: str, basis: str) -> None:
    d = decide(request(actor, purposes=purposes, action=action, res=resource(author="f001")), [])
    assert (d.verdict, d.basis) == (verdict, basis)


def test_planning_purposes_are_configurable() -> None:
    cfg = Config(planning_purposes=frozenset({"HOPERAT", "POPHLTH"}))
    assert decide(request(purposes=("POPHLTH",), ndoo=True), [], cfg).basis == "default:ndoo"
    assert decide(request(purposes=("POPHLTH",), ndoo=False), [], cfg).basis == "default:secondary-use"


def test_admin_bypass_can_be_switched_off() -> None:
    assert decide(request(ADMIN), [], Config(admin_bypass=False)).basis == "default:no-basis"


def test_ndoo_does_not_touch_direct_care() -> None:
    assert decide(request(ndoo=True), []).basis == "default:direct-care"


def test_two_purposes_join_their_obligations() -> None:
    c13 = consent("c", prov("permit", prov("deny", labels=("PSY",)),
                            prov("deny", labels=("HIV",), purposes=("HRESCH",))))
    d = decide(request_mode(purposes=("TREAT", "HRESCH")), [c13])
    assert d.verdict == "PERMIT"
    assert not filter_allows(d, resource(labels=("PSY",))) and not filter_allows(d, resource(labels=("HIV",)))
    assert filter_allows(d, resource(labels=("N",)))


def test_resource_facts_normalise_aliases() -> None:
    r = ResourceFacts(type="Observation", security=frozenset({"http://hl7.org/fhir/v3/Confidentiality|R"}))
    assert r.security == {c.token(c.CONFIDENTIALITY, "R")}
    c15 = consent("c", prov("permit", prov("deny", labels=("R",))))
    assert decide(request(res=r), [c15]).verdict == "DENY"


def test_missing_author_matches_a_custodian_deny_but_never_own_record() -> None:
    c11 = consent("c", prov("deny", actors=("Organization/f001",), role="CST"))
    assert decide(request(user_at("f001"), res=resource(author=None)), [c11]).basis == "Consent/c"


def test_missing_id_matches_an_instance_deny() -> None:
    c = consent("c", prov("permit", prov("deny", data=(("instance", "Observation/o1"),))))
    assert decide(request(res=ResourceFacts(type="Observation")), [c]).verdict == "DENY"
    assert decide(request(res=resource(rid="o2")), [c]).verdict == "PERMIT"


def test_parsed_once_decides_many() -> None:
    parsed = [parse_consent(consent("c", prov("permit", prov("deny", labels=("PSY",)))))]
    verdicts = [decide(request(res=resource(rid=f"o{i}", labels=lab)), parsed).verdict
                for i, lab in enumerate([("N",), ("PSY",), ()])]
    assert verdicts == ["PERMIT", "DENY", "PERMIT"]


def test_decision_and_obligation_guards() -> None:
    psy = Feature("security", c.token(c.ACT_CODE, "PSY"))
    with pytest.raises(ValueError):
        Decision("DENY", "rule:x", obligations=(Obligation(codes=frozenset({psy})),))
    with pytest.raises(ValueError):
        Decision("MAYBE", "rule:x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Obligation(codes=frozenset({psy}), except_any_of_codes=frozenset({psy}))
    assert not filter_allows(Decision("DENY", "rule:x"), resource())
    assert filter_allows(Decision("PERMIT", "rule:x"), resource())


def test_dr_a_keys() -> None:
    assert "Practitioner/dr-a" in DR_A.match_keys
