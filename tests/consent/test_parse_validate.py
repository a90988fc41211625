"""parse_consent / validate_consent: problems with element paths, uncomputable consents, aliasing."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consent import codes as c
from consent import decide, parse_consent, validate_consent
from tests.consent._builders import DR_A, coding, consent, prov, related_person, request, resource, user_at

HERE = Path(__file__).resolve()
SHARED = HERE.parents[3] / "shared" if (HERE.parents[3] / "shared").exists() else Path("/work/shared")
EXAMPLES = sorted((SHARED / "data" / "fhir-r4-spec" / "examples").glob("Consent-*.json"))

GOOD = consent("good", prov("permit", prov("deny", labels=("PSY",), actors=("Organization/rr8",),
                                           purposes=("TREAT",), actions=("access",), classes=("Observation",),
                                           data_period=("2018-01-01", "2018-06-30"),
                                           data=(("related", "Task/t3"),)),
                            period=("2019-11-01", "2029-01-01")))

Edit = Callable[[dict[str, Any]], Any]


def nested(d: dict[str, Any]) -> dict[str, Any]:
    return d["provision"]["provision"][0]  # type: ignore[no-any-return]


# (id, edit, expected path at the start of a problem, uncomputable?)
CASES: list[tuple[str, Edit, str, bool]] = [
    ("no-patient", lambda d: d.pop("patient"), "Consent.patient", False),
    ("patient-not-a-patient", lambda d: d.update(patient={"reference": "Group/g1"}), "Consent.patient.reference", False),
    ("bad-nhs-number", lambda d: d.update(patient={"identifier": {"system": c.NHS_NUMBER, "value": "9434765918"}}),
     "Consent.patient.identifier.value", False),
    ("no-policy", lambda d: d.pop("policyRule"), "Consent.policyRule", False),
    ("no-datetime", lambda d: d.pop("dateTime"), "Consent.dateTime", True),
    ("bad-datetime", lambda d: d.update(dateTime="yesterday"), "Consent.dateTime", True),
    ("datetime-without-offset", lambda d: d.update(dateTime="2024-01-01T10:00:00"), "Consent.dateTime", False),
    ("datetime-without-seconds", lambda d: d.update(dateTime="2024-01-01T10:00Z"), "Consent.dateTime", False),
    ("no-provision", lambda d: d.pop("provision"), "Consent.provision", True),
    ("root-untyped", lambda d: d["provision"].pop("type"), "Consent.provision.type", True),
    ("root-bad-type", lambda d: d["provision"].update(type="maybe"), "Consent.provision.type", True),
    ("nested-untyped", lambda d: nested(d).pop("type"), "Consent.provision.provision[0].type", True),
    ("data-dependents", lambda d: nested(d)["data"][0].update(meaning="dependents"),
     "Consent.provision.provision[0].data[0].meaning", True),
    ("data-unknown-meaning", lambda d: nested(d)["data"][0].update(meaning="about"),
     "Consent.provision.provision[0].data[0].meaning", True),
    ("data-no-reference", lambda d: nested(d)["data"][0].pop("reference"),
     "Consent.provision.provision[0].data[0].reference", False),
    ("unknown-scope", lambda d: d.update(scope={"coding": [coding(c.CONSENT_SCOPE, "everything")]}),
     "Consent.scope.coding[0]", False),
    ("no-scope", lambda d: d.pop("scope"), "Consent.scope", False),
    ("no-category", lambda d: d.pop("category"), "Consent.category", False),
    ("bad-status", lambda d: d.update(status="enabled"), "Consent.status", False),
    ("wrong-resource-type", lambda d: d.update(resourceType="Contract"), "Consent.resourceType", False),
    ("unknown-purpose", lambda d: nested(d)["purpose"][0].update(code="TREATMENT"),
     "Consent.provision.provision[0].purpose[0]", False),
    ("unknown-security-label", lambda d: nested(d)["securityLabel"][0].update(code="PSYCH"),
     "Consent.provision.provision[0].securityLabel[0]", False),
    ("label-without-system", lambda d: nested(d)["securityLabel"][0].pop("system"),
     "Consent.provision.provision[0].securityLabel[0].system", False),
    ("unknown-action", lambda d: nested(d)["action"][0]["coding"][0].update(code="read"),
     "Consent.provision.provision[0].action[0].coding[0]", False),
    ("unknown-resource-type-class", lambda d: nested(d)["class"][0].update(code="MedStatement"),
     "Consent.provision.provision[0].class", False),
    ("actor-without-reference", lambda d: nested(d)["actor"][0].pop("reference"),
     "Consent.provision.provision[0].actor[0].reference", False),
    ("actor-without-role", lambda d: nested(d)["actor"][0].pop("role"),
     "Consent.provision.provision[0].actor[0].role", False),
    ("actor-on-another-server", lambda d: nested(d)["actor"][0]["reference"].update(
        reference="https://elsewhere.example/fhir/Organization/rr8"),
     "Consent.provision.provision[0].actor[0].reference.reference", False),
    ("period-bad-end", lambda d: d["provision"]["period"].update(end="2029-02-30"), "Consent.provision.period.end",
     True),
    ("period-reversed", lambda d: d["provision"]["period"].update(start="2030-01-01"), "Consent.provision.period",
     False),
    ("period-time-without-offset", lambda d: d["provision"]["period"].update(start="2019-11-01T09:00:00"),
     "Consent.provision.period.start", False),
    ("data-period-bad", lambda d: nested(d)["dataPeriod"].update(start="2018-1-1"),
     "Consent.provision.provision[0].dataPeriod.start", True),
    ("purpose-not-an-array", lambda d: nested(d).update(purpose=coding(c.ACT_REASON, "TREAT")),
     "Consent.provision.provision[0].purpose", False),
]


def test_good_consent_has_no_problems() -> None:
    parsed = parse_consent(GOOD)
    assert validate_consent(GOOD) == []
    assert parsed.computable and parsed.basis == "Consent/good"


@pytest.mark.parametrize(("edit", "path", "fatal"), [pytest.param(e, p, f, id=i) for i, e, p, f in CASES])
def test_problem_is_reported_with_its_path(edit: Edit, path: str, fatal: bool) -> None:
    bad = copy.deepcopy(GOOD)
    edit(bad)
    problems = validate_consent(bad)
    assert any(p.startswith(path + ":") for p in problems), problems
    parsed = parse_consent(bad)
    assert parsed.computable is not fatal, parsed.uncomputable


def test_uncomputable_consent_denies_where_its_root_applies() -> None:
    undated = consent("u", prov("deny", actors=("Organization/54",)), date_time=None)
    assert decide(request(), [undated]).basis == "default:direct-care"  # root n/a for RR8
    assert decide(request(user_at("54")), [undated]).basis == "rule:uncomputable"


def test_uncomputable_objection_is_overridden_by_break_glass() -> None:
    untyped = consent("u", prov(None))
    d = decide(request(purposes=("BTG",)), [untyped])
    assert (d.verdict, d.basis, d.break_glass) == ("PERMIT", "rule:btg-override", True)


@pytest.mark.parametrize("system", [c.ACT_REASON, "http://hl7.org/fhir/v3/ActReason", "urn:oid:2.16.840.1.113883.5.8",
                                    "2.16.840.1.113883.5.8"])
def test_purpose_system_aliases(system: str) -> None:
    d = consent("c", prov("deny", prov("permit", purposes=("ETREAT",))))
    d["provision"]["provision"][0]["purpose"][0]["system"] = system
    assert validate_consent(d) == []
    assert decide(request(purposes=("ETREAT",)), [d]).verdict == "PERMIT"


@pytest.mark.parametrize("system", ["http://hl7.org/fhir/v3/Confidentiality", "urn:oid:2.16.840.1.113883.5.25"])
def test_security_label_aliases(system: str) -> None:
    d = consent("c", prov("permit", prov("deny", labels=("R",))))
    d["provision"]["provision"][0]["securityLabel"][0]["system"] = system
    assert validate_consent(d) == []
    assert decide(request(res=resource(labels=("R",))), [d]).verdict == "DENY"


def test_our_absolute_base_and_history_are_stripped() -> None:
    base = "https://care.example/fhir"
    d = consent("c", prov("permit", prov("deny", actors=(f"{base}/Organization/rr8/_history/3",))))
    assert validate_consent(d, base_urls=(base,)) == []
    assert decide(request(), [parse_consent(d, base_urls=(base,))]).verdict == "DENY"


def test_consent_found_by_nhs_number() -> None:
    d = consent("c", prov("deny"))
    d["patient"] = {"identifier": {"system": c.NHS_NUMBER, "value": "9434765919"}}
    assert validate_consent(d) == []
    assert decide(request(), [d]).basis == "Consent/c"


def test_share_only_root_permit_is_read_as_deny_everything_else() -> None:
    """C3: root(permit; actor joy; class Observation) shares only Observations with joy."""
    d = consent("c", prov("permit", actors=("RelatedPerson/joy",), classes=("Observation",)))
    parsed = parse_consent(d)
    assert parsed.notes and parsed.root is not None and parsed.root.type == "deny"
    joy = related_person("joy")
    assert decide(request(joy), [parsed]).basis == "Consent/c"
    assert decide(request(joy), [parsed]).verdict == "PERMIT"
    assert decide(request(joy, res=resource("MedicationStatement")), [parsed]).verdict == "DENY"
    assert decide(request(related_person("bob")), [parsed]).basis == "default:proxy"


@pytest.mark.parametrize("garbage", [None, "text", 3, [], {"provision": "x"}, {"provision": {"provision": [1, "a"]}},
                                     {"provision": {"type": "deny", "actor": "x", "period": []}},
                                     {"dateTime": 20240101, "scope": "x", "patient": []}])
def test_parse_never_raises(garbage: Any) -> None:
    parsed = parse_consent(garbage)
    assert validate_consent(garbage)
    assert decide(request(), [parsed]).verdict in {"PERMIT", "DENY"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_fhir_r4_examples_parse_and_untyped_roots_are_flagged(path: Path) -> None:
    doc = json.loads(path.read_text())
    problems = validate_consent(doc)
    parsed = parse_consent(doc)
    root_typed = isinstance(doc.get("provision"), dict) and "type" in doc["provision"]
    assert ("Consent.provision.type: missing" in " ".join(problems)) is not root_typed
    assert parsed.computable is (root_typed and not parsed.uncomputable)


def test_fhir_example_not_org_decides_like_case_9() -> None:
    doc = json.loads((SHARED / "data/fhir-r4-spec/examples/Consent-consent-example-notOrg.json").read_text())
    assert parse_consent(doc).computable
    f001 = replace(request(user_at("f001")), patient="Patient/f001", nhs_number=None)
    assert decide(f001, [doc]).basis == "Consent/consent-example-notOrg"
    assert decide(replace(f001, actor=DR_A), [doc]).basis == "default:direct-care"
