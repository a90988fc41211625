"""SMART scopes are parsed, not compared as strings (no database needed)."""

from __future__ import annotations

import pytest

from service.auth.scopes import ScopeError, ScopeSet, interaction_perm, parse_scope


@pytest.mark.parametrize("raw,context,rtype,perms,params", [
    ("patient/Observation.rs", "patient", "Observation", "rs", ()),
    ("user/*.cruds", "user", "*", "cruds", ()),
    ("system/Patient.read", "system", "Patient", "rs", ()),
    ("patient/*.write", "patient", "*", "cud", ()),
    ("user/Encounter.*", "user", "Encounter", "cruds", ()),
    ("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
     "patient", "Observation", "rs",
     (("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),)),
])
def test_resource_scopes_v1_and_v2(raw, context, rtype, perms, params):  # type: ignore[no-untyped-def]
    s = parse_scope(raw)
    assert s is not None
    assert (s.context, s.rtype, "".join(p for p in "cruds" if p in s.perms), s.params) == (context, rtype, perms,
                                                                                          params)


@pytest.mark.parametrize("raw", ["patient/Observation.sr", "patient/Observation.rx", "user/Nonsense.rs",
                                 "system/*.read?x=1", "patient/Observation.rs?", "patient/Observation.rs?code=",
                                 "user/Observation", "patient/.rs"])
def test_malformed_resource_scopes_are_refused(raw):  # type: ignore[no-untyped-def]
    with pytest.raises(ScopeError):
        ScopeSet.parse(raw)


def test_other_scopes_are_kept_apart():
    s = ScopeSet.parse("openid fhirUser launch/patient offline_access patient/*.rs")
    assert s.other == {"openid", "fhirUser", "launch/patient", "offline_access"}
    assert [x.text() for x in s.resource] == ["patient/*.rs"]


def test_string_lookalikes_do_not_grant():
    s = ScopeSet.parse("patient/Observation.rs")
    assert s.allows("r", "Observation") and s.allows("s", "Observation")
    assert not s.allows("r", "ObservationDefinition")
    assert not s.allows("c", "Observation") and not s.allows("r", "Patient")


def test_grant_narrows_to_the_ceiling():
    ceiling = ScopeSet.parse("patient/*.rs patient/Consent.cru launch/patient openid")
    got = ceiling.grant(ScopeSet.parse("patient/*.cruds patient/Consent.cruds launch/patient openid offline_access "
                                       "user/*.rs"))
    assert got.text() == "patient/*.rs patient/Consent.crus launch/patient openid"


def test_restricted_ceiling_covers_only_restricted_requests():
    ceiling = ScopeSet.parse("user/Observation.rs?category=laboratory")
    assert ceiling.grant(ScopeSet.parse("user/Observation.rs")).resource == ()
    assert ceiling.grant(ScopeSet.parse("user/Observation.r?category=laboratory")).text() == \
        "user/Observation.r?category=laboratory"


@pytest.mark.parametrize("interaction,perm", [
    ("read", "r"), ("vread", "r"), ("history-instance", "r"), ("create", "c"), ("update", "u"), ("patch", "u"),
    ("delete", "d"), ("search-type", "s"), ("search-system", "s"), ("history-type", "s"), ("history-system", "s"),
    ("operation:everything", "r"), ("transaction", None), ("capabilities", None)])
def test_interactions_map_to_smart_permissions(interaction, perm):  # type: ignore[no-untyped-def]
    assert interaction_perm(interaction) == perm
