"""consent-semantics.md section B: every worked case (1-37) and every sub-case, as one table.

Each row: the consents (FHIR JSON), the request (R0 with changes), the expected verdict and basis, and
for request-mode rows the REDACT obligations (codes form, bare codes). Rows also check ``break_glass``
(false unless stated) and that the request-mode plan agrees with the row's resource (the A.10 invariant).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from consent import DEFAULT_CONFIG, Config, Request, decide, filter_allows, parse_consent
from tests.consent._builders import (
    BTG_MEMBER,
    DR_A,
    NOW,
    THE_PATIENT,
    consent,
    later,
    org_keys,
    practitioner,
    prov,
    related_person,
    request,
    request_mode,
    resource,
    user_at,
)


@dataclass(frozen=True)
class Row:
    id: str
    consents: tuple[dict[str, Any], ...]
    request: Request
    verdict: str
    basis: str
    redact: tuple[frozenset[str], ...] | None = None
    break_glass: bool = False
    config: Config = DEFAULT_CONFIG


def row(rid: str, consents: list[dict[str, Any]], req: Request, verdict: str, basis: str, **kw: Any) -> Any:
    return pytest.param(Row(rid, tuple(consents), req, verdict, basis, **kw), id=rid)


P, D = "PERMIT", "DENY"
ROOT_DENY = prov("deny")
OFF = Config(btg_override=False)

c3 = consent("c3", ROOT_DENY)
c6 = consent("c6", prov("permit", prov("deny", actors=("Organization/rr8",))))
c7 = consent("c7", prov("permit", prov("deny", actors=("https://fhir.nhs.uk/Id/ods-organization-code|RR8",))))
c8 = consent("c8", prov("permit", prov("deny", actors=("Practitioner/dr-a",))))
c9 = consent("c9", prov("deny", actors=("Organization/f001",), actions=("access", "correct")))
c10 = consent("c10", prov("deny", prov("permit", actors=("Organization/rr8",))))
c11 = consent("c11", prov("deny", actors=("Organization/f001",), role="CST"))
c12 = consent("c12", prov("permit", prov("deny", data=(("related", "Task/t3"),))))
c13 = consent("c13", prov("permit", prov("deny", labels=("PSY",))))
c14 = consent("c14", prov("permit", prov("deny", classes=("MedicationStatement",), actors=("Organization/rr8",))))
c15 = consent("c15", prov("permit", prov("deny", labels=("R",), classes=("MedicationStatement",))))
c16 = consent("c16", prov("permit", prov("deny", labels=("ETHUD", "HIV"))))
c17 = consent("c17", prov("permit", prov("deny", labels=("R",), actors=("Organization/54",)),
                          prov("deny", labels=("V",), actors=("Organization/54",)),
                          prov("deny", purposes=("HMARKT",))))
c18 = consent("c18", prov("permit", prov("deny", loinc=("42828-4",))))
c19 = consent("c19", prov("permit", purposes=("TREAT", "ETREAT")))
c20 = consent("c20", prov("deny", prov("permit", purposes=("ETREAT",))))
c21 = consent("c21", prov("permit", prov("deny", actors=("Organization/54",)), period=("2019-11-01", "2029-01-01")))
c22_ended = consent("c22", prov("deny", period=("1964-01-01", "2016-01-01")))
c22_future = consent("c22", prov("deny", period=(later(48).isoformat(), None)))
c23 = consent("c23", prov("permit", prov("deny", actors=("Practitioner/dr-a",), period=(None, "2024"))))
c24 = consent("c24", prov("permit", prov("deny", data_period=("2018-01-01", "2018-06-30"))))
a25 = consent("a", ROOT_DENY, "2023-01-10")
b25 = consent("b", prov("permit"), "2024-03-01")
b26 = consent("b", prov("permit", purposes=("HRESCH",), actors=("Organization/uni",)), "2024-03-01", scope="research")
tie_deny = consent("a-deny", ROOT_DENY, "2024-01-01T09:00:00Z")
tie_permit = consent("b-permit", prov("permit"), "2024-01-01T09:00:00+00:00")
tie_deny_z = consent("z-deny", ROOT_DENY, "2024-01-01T09:00:00Z")
c30 = consent("c30", ROOT_DENY, patient="Patient/someone-else")
c31 = consent("c31", prov("deny", prov("permit", purposes=("BTG",), actors=("Group/btg-users",))))
c33 = consent("c33", prov("permit", prov("deny", prov("permit", purposes=("BTG",), actors=("Group/btg-users",)),
                                          labels=("R",))))
c34 = consent("c34", prov("permit", actors=("RelatedPerson/joy",), role="IRCP", actions=("access",)))
c36 = consent("c36", prov(None, actors=("Practitioner/f204",)))
c37 = consent("c37", prov("deny", prov("deny", actors=("Organization/54",))))

JOY = related_person("joy")
RES_R = resource(labels=("R",))
NOPAT = resource(labels=("N", "NOPAT"))
F204 = practitioner("f204", "rr8")

ROWS = [
    row("case-01-no-consent", [], request(), P, "default:direct-care"),
    row("case-02-hresch-no-ndoo", [], request(purposes=("HRESCH",)), P, "default:secondary-use"),
    row("case-02-hresch-ndoo", [], request(purposes=("HRESCH",), ndoo=True), D, "default:ndoo"),
    row("case-03-root-deny", [c3], request(), D, "Consent/c3"),
    row("case-04-own-record-gp5", [c3], request(user_at("gp5")), P, "rule:own-record"),
    row("case-05-root-deny-covers-hresch", [c3], request(purposes=("HRESCH",)), D, "Consent/c3"),
    row("case-06-named-org-rr8", [c6], request(), D, "Consent/c6"),
    row("case-06-other-org-ryj", [c6], request(user_at("ryj")), P, "Consent/c6"),
    row("case-07-actor-by-ods-identifier", [c7],
        request(replace(DR_A, keys=frozenset({"Organization/x9", "Practitioner/dr-a"}),
                        identifiers=frozenset({"https://fhir.nhs.uk/Id/ods-organization-code|RR8"}))),
        D, "Consent/c7"),
    row("case-08-practitioner-anywhere", [c8], request(practitioner("dr-a", "ryj")), D, "Consent/c8"),
    row("case-08-other-practitioner-same-org", [c8], request(practitioner("dr-b", "rr8")), P, "Consent/c8"),
    row("case-09-not-org-f001", [c9], request(user_at("f001")), D, "Consent/c9"),
    row("case-09-rr8-root-not-applicable", [c9], request(), P, "default:direct-care"),
    row("case-10-opt-out-except-rr8", [c10], request(), P, "Consent/c10"),
    row("case-10-opt-out-ryj", [c10], request(user_at("ryj")), D, "Consent/c10"),
    row("case-11-custodian-f001-resource", [c11], request(res=resource(author="f001")), D, "Consent/c11"),
    row("case-11-resource-by-gp5", [c11], request(), P, "default:direct-care"),
    row("case-11-requester-f001-own-record", [c11], request(user_at("f001"), res=resource(author="f001")),
        P, "rule:own-record"),
    row("case-12-related-task", [c12], request(res=resource(related=("Task/t3",))), D, "Consent/c12"),
    row("case-12-unrelated", [c12], request(res=resource(related=("Task/t9",))), P, "Consent/c12"),
    row("case-13-psy-resource", [c13], request(res=resource(labels=("PSY", "R"))), D, "Consent/c13"),
    row("case-13-n-resource", [c13], request(), P, "Consent/c13"),
    row("case-13-psy-request-mode", [c13], request_mode(), P, "Consent/c13", redact=(frozenset({"PSY"}),)),
    row("case-14-medication-statement", [c14], request(res=resource("MedicationStatement")), D, "Consent/c14"),
    row("case-14-immunization", [c14], request(res=resource("Immunization")), P, "Consent/c14"),
    row("case-14-request-mode", [c14], request_mode(), P, "Consent/c14",
        redact=(frozenset({"MedicationStatement"}),)),
    row("case-15-medstatement-r", [c15], request(res=resource("MedicationStatement", labels=("R",))), D, "Consent/c15"),
    row("case-15-medstatement-n", [c15], request(res=resource("MedicationStatement")), P, "Consent/c15"),
    row("case-15-observation-r", [c15], request(res=RES_R), P, "Consent/c15"),
    row("case-16-hiv-resource", [c16], request(res=resource(labels=("HIV",))), D, "Consent/c16"),
    row("case-16-request-mode", [c16], request_mode(), P, "Consent/c16", redact=(frozenset({"ETHUD", "HIV"}),)),
    row("case-17-org54-request-mode", [c17], request_mode(user_at("54")), P, "Consent/c17",
        redact=(frozenset({"R", "V"}),)),
    row("case-17-org54-hmarkt", [c17], request(user_at("54"), purposes=("HMARKT",)), D, "Consent/c17"),
    row("case-18-loinc-code", [c18], request(res=resource(codes=("http://loinc.org|42828-4",))), D, "Consent/c18"),
    row("case-18-request-mode", [c18], request_mode(), P, "Consent/c18", redact=(frozenset({"42828-4"}),)),
    row("case-19-etreat", [c19], request(purposes=("ETREAT",)), P, "Consent/c19"),
    row("case-19-hmarkt-default", [c19], request(purposes=("HMARKT",)), D, "default:no-basis"),
    row("case-19-etreat-and-hmarkt", [c19], request(purposes=("ETREAT", "HMARKT")), D, "default:no-basis"),
    row("case-20-etreat", [c20], request(purposes=("ETREAT",)), P, "Consent/c20"),
    row("case-20-treat", [c20], request(), D, "Consent/c20"),
    row("case-21-date-only-end-covers-day", [c21], request(user_at("54"), now=NOW.replace(year=2029, month=1, day=1,
                                                                                          hour=12)),
        D, "Consent/c21"),
    row("case-21-x-next-day-expired", [c21], request(user_at("54"), now=NOW.replace(year=2029, month=1, day=2,
                                                                                    hour=0)),
        P, "default:direct-care"),
    row("case-22-expired", [c22_ended], request(), P, "default:direct-care"),
    row("case-22-not-yet-valid", [c22_future], request(), P, "default:direct-care"),
    row("case-23-year-end-inside", [c23], request(now=NOW.replace(year=2024, month=12, day=31, hour=23, minute=30)),
        D, "Consent/c23"),
    row("case-23-next-year", [c23], request(now=NOW.replace(year=2025, month=1, day=1, hour=0, minute=0)),
        P, "Consent/c23"),
    row("case-24-last-london-second", [c24],
        request(res=resource(date=NOW.replace(year=2018, month=6, day=30, hour=22, minute=59, second=59))),
        D, "Consent/c24"),
    row("case-24-after-london-midnight", [c24],
        request(res=resource(date=NOW.replace(year=2018, month=6, day=30, hour=23, minute=30))), P, "Consent/c24"),
    row("case-24-no-date", [c24], request(res=resource(date=None)), D, "Consent/c24"),
    row("case-25-newer-permit-withdraws", [a25, b25], request(), P, "Consent/b"),
    row("case-26-treat-research-na", [a25, b26], request(), D, "Consent/a"),
    row("case-26-hresch-uni-opt-in", [a25, b26], request(user_at("uni"), purposes=("HRESCH",), ndoo=True),
        P, "Consent/b"),
    row("case-27-hresch-other-org-ndoo", [b26], request(user_at("ryj"), purposes=("HRESCH",), ndoo=True),
        D, "default:ndoo"),
    row("case-28-tie-denies", [tie_deny, tie_permit], request(), D, "Consent/a-deny"),
    row("case-28-tie-denies-any-order", [tie_permit, tie_deny_z], request(), D, "Consent/z-deny"),
    *[row(f"case-29-status-{s}", [consent("c29", ROOT_DENY, status=s)], request(), P, "default:direct-care")
      for s in ("inactive", "entered-in-error", "draft", "proposed", "rejected")],
    row("case-30-other-patient", [c30], request(), P, "default:direct-care"),
    row("case-31-btg-member", [c31], request(BTG_MEMBER, purposes=("BTG",)), P, "Consent/c31", break_glass=True),
    row("case-31-treat-member", [c31], request(BTG_MEMBER), D, "Consent/c31"),
    row("case-31-btg-non-member-override-off", [c31], request(purposes=("BTG",)), D, "Consent/c31", config=OFF),
    row("case-32-btg-override-on", [c3], request(purposes=("BTG",)), P, "rule:btg-override", break_glass=True),
    row("case-32-btg-override-off", [c3], request(purposes=("BTG",)), D, "Consent/c3", config=OFF),
    row("case-32-no-consent-btg", [], request(purposes=("BTG",)), P, "default:direct-care"),
    row("case-33-restricted-treat", [c33], request(BTG_MEMBER, res=RES_R), D, "Consent/c33"),
    row("case-33-restricted-btg-member", [c33], request(BTG_MEMBER, purposes=("BTG",), res=RES_R), P, "Consent/c33",
        break_glass=True),
    row("case-34-proxy-joy", [c34], request(JOY), P, "Consent/c34"),
    row("case-34-other-related-person", [c34], request(related_person("bob")), D, "default:proxy"),
    row("case-35-nopat-joy", [c34], request(JOY, res=NOPAT), D, "rule:nopat"),
    row("case-35-nopat-patient", [c34], request(THE_PATIENT, purposes=(), res=NOPAT), D, "rule:nopat"),
    row("case-35-nopat-dr-a", [c34], request(res=NOPAT), P, "default:direct-care"),
    row("case-36-untyped-root-f204", [c36], request(F204), D, "rule:uncomputable"),
    row("case-36-untyped-root-dr-a", [c36], request(), P, "default:direct-care"),
    row("case-37-nested-deny-honoured", [c37], request(user_at("54")), D, "Consent/c37"),
]


def _cases_covered() -> set[int]:
    return {int(p.values[0].id.split("-")[1]) for p in ROWS}


def test_every_worked_case_has_a_row() -> None:
    assert _cases_covered() == set(range(1, 38))


@pytest.mark.parametrize("case", ROWS)
def test_worked_case(case: Row) -> None:
    consents = [parse_consent(c) for c in case.consents]
    d = decide(case.request, consents, case.config)
    assert (d.verdict, d.basis) == (case.verdict, case.basis), d.reasons
    assert d.break_glass is case.break_glass
    if case.redact is None:
        assert d.obligations == ()
    else:
        assert all(o.form == "codes" for o in d.obligations), d.obligations
        assert tuple(frozenset(f.code for f in o.codes) for o in d.obligations) == case.redact
        assert all(o.unless_authored_by == case.request.actor.org_keys for o in d.obligations)


@pytest.mark.parametrize("case", [p for p in ROWS if p.values[0].request.resource is not None])
def test_worked_case_plan_agrees(case: Row) -> None:
    """The request-mode plan for the same request filters the row's resource exactly as resource mode."""
    consents = [parse_consent(c) for c in case.consents]
    plan = decide(replace(case.request, resource=None), consents, case.config)
    resource_decision = decide(case.request, consents, case.config)
    assert case.request.resource is not None
    assert filter_allows(plan, case.request.resource) == resource_decision.permitted, (plan, resource_decision)


def test_stored_json_is_accepted_directly() -> None:
    assert decide(request(), [c3]).basis == "Consent/c3"


def test_org_keys_include_the_ods_code() -> None:
    assert DR_A.org_keys == frozenset(org_keys("rr8"))
