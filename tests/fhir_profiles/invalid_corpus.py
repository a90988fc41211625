"""A corpus of resources the FHIR R4 specification forbids, written for this project (in the spirit of HL7's
validator test cases, not copied from them). Each case: (name, resource, the element path the refusal must
name in `expression`, a word its diagnostics must contain).

Used by tests/fhir_profiles/test_invalid_corpus.py (straight through `validate_resource`) and by
tests/api/test_validation_on_write.py (through the HTTP API, on both databases).
"""

from __future__ import annotations

from typing import Any

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def _patient(**kw: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **kw}


def _obs(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    base.update(kw)
    return base


def _narrative(div: str, status: str = "generated") -> dict[str, Any]:
    return _patient(text={"status": status, "div": div})


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # -- structure, cardinality and types (the base spec's element definitions) --
    ("unknown element", _patient(foo="bar"), "Patient.foo", "unknown element"),
    ("boolean as string", _patient(active="yes"), "Patient.active", "boolean"),
    ("boolean as number", _patient(active=1), "Patient.active", "boolean"),
    ("array where one is allowed", _patient(gender=["male"]), "Patient.gender", "gender"),
    ("object where an array is required", _patient(name={"family": "Smith"}), "Patient.name", "array"),
    ("required element missing", {"resourceType": "Observation",
                                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}},
     "Observation.status", "required"),
    ("required element missing (code)", {"resourceType": "Observation", "status": "final"},
     "Observation.code", "required"),
    ("decimal as string", _obs(valueQuantity={"value": "1.5"}), "Observation.valueQuantity.value", "decimal"),
    ("integer overflow", _patient(multipleBirthInteger=3_000_000_000), "Patient.multipleBirthInteger", "integer"),
    ("two choices of one element", _patient(multipleBirthBoolean=True, multipleBirthInteger=2),
     "Patient.multipleBirth[x]", "multipleBirth"),
    ("null value", _patient(gender=None), "Patient.gender", "null"),
    ("null in an array", _patient(name=[None]), "Patient.name[0]", "null"),
    ("unsignedInt negative", _patient(photo=[{"contentType": "image/png", "size": -1}]),
     "Patient.photo[0].size", "size"),
    ("positiveInt zero", {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                          "subject": {"display": "x"}, "medicationCodeableConcept": {"text": "x"},
                          "dispenseRequest": {"numberOfRepeatsAllowed": 1,
                                              "dispenseInterval": {"value": 1},
                                              "validityPeriod": {"start": "2024-01-01"},
                                              "expectedSupplyDuration": {"value": 1}},
                          "dosageInstruction": [{"timing": {"repeat": {"count": 0}}}]},
     "MedicationRequest.dosageInstruction[0].timing.repeat.count", "count"),
    ("code with whitespace", _patient(gender=" male"), "Patient.gender", "gender"),
    ("uri with a space", _obs(code={"coding": [{"system": "http://loinc .org", "code": "1"}]}),
     "Observation.code.coding[0].system", "uri"),
    ("resource in a reference", _obs(subject={"reference": {"id": "x"}}), "Observation.subject.reference",
     "string"),
    # -- ele-1: every element has a value or children; no empty arrays, objects or strings --
    ("empty array", _patient(name=[]), "Patient.name", "ele-1"),
    ("empty object", _patient(name=[{}]), "Patient.name[0]", "ele-1"),
    ("empty string", _patient(name=[{"family": ""}]), "Patient.name[0].family", "ele-1"),
    ("empty object nested", _obs(subject={}), "Observation.subject", "ele-1"),
    ("empty string in array", _patient(name=[{"given": [""]}]), "Patient.name[0].given[0]", "ele-1"),
    ("empty extension", _patient(extension=[{"url": "http://example.org/x"}]), "Patient.extension[0]", "ext-1"),
    ("extension with value and extensions", _patient(extension=[{
        "url": "http://example.org/x", "valueString": "a",
        "extension": [{"url": "y", "valueString": "b"}]}]), "Patient.extension[0]", "ext-1"),
    # -- dates, times, Periods --
    ("impossible date", _patient(birthDate="1990-13-45"), "Patient.birthDate", "date"),
    ("not a date", _patient(birthDate="yesterday"), "Patient.birthDate", "date"),
    ("February 30", _patient(birthDate="2023-02-30"), "Patient.birthDate", "date"),
    ("dateTime with a time but no zone", _obs(effectiveDateTime="2020-01-01T10:00:00"),
     "Observation.effectiveDateTime", "time zone"),
    ("instant without time", _obs(issued="2020-01-01"), "Observation.issued", "instant"),
    ("Period ending before it starts", {"resourceType": "Encounter", "status": "finished",
                                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                  "code": "AMB"},
                                        "period": {"start": "2024-05-02", "end": "2024-05-01"}},
     "Encounter.period", "per-1"),
    ("Period ending before it starts (times)", _obs(effectivePeriod={"start": "2024-05-01T10:00:00Z",
                                                                      "end": "2024-05-01T09:00:00Z"}),
     "Observation.effectivePeriod", "per-1"),
    ("Period ending before it starts (zones)", _obs(effectivePeriod={"start": "2024-05-01T10:00:00+00:00",
                                                                      "end": "2024-05-01T11:00:00+02:00"}),
     "Observation.effectivePeriod", "per-1"),
    # -- base64Binary --
    ("bad base64", _patient(photo=[{"contentType": "image/png", "data": "not base64!!"}]),
     "Patient.photo[0].data", "base64"),
    ("base64 with bad padding", _patient(photo=[{"contentType": "image/png", "data": "QUJD="}]),
     "Patient.photo[0].data", "base64"),
    ("Binary with bad base64", {"resourceType": "Binary", "contentType": "text/plain", "data": "@@@@"},
     "Binary.data", "base64"),
    # -- ids --
    ("contained id with a space", _obs(contained=[{"resourceType": "Patient", "id": "p 1"}],
                                      subject={"reference": "#p 1"}), "Observation.contained[0].id", "id"),
    ("empty element id", _patient(name=[{"id": "", "family": "A"}]), "Patient.name[0].id", "ele-1"),
    ("resource id in a contained resource too long", _obs(contained=[{"resourceType": "Patient", "id": "x" * 65}],
                                                          subject={"reference": "#" + "x" * 65}),
     "Observation.contained[0].id", "id"),
    ("contained resource with contained", _obs(contained=[{"resourceType": "Patient", "id": "p1", "contained": [
        {"resourceType": "Patient", "id": "p2"}]}], subject={"reference": "#p1"}),
     "Observation.contained[0].contained", "dom-2"),
    ("NHS number failing modulus 11", _patient(identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                             "value": "9434765918"}]),
     "Patient.identifier[0].value", "modulus-11"),
    ("resource id in a Bundle entry", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "not valid!"}}]}, "Bundle.entry[0].resource.id", "id"),
    # -- required bindings of the base specification --
    ("gender outside its ValueSet", _patient(gender="xyz"), "Patient.gender", "administrative-gender"),
    ("Observation.status outside its ValueSet", _obs(status="done"), "Observation.status", "observation-status"),
    ("Quantity.comparator outside its ValueSet", _obs(valueQuantity={"value": 1, "comparator": "=="}),
     "Observation.valueQuantity.comparator", "quantity-comparator"),
    ("Narrative.status outside its ValueSet", _narrative(f'<div {XHTML}><p>x</p></div>', status="bogus"),
     "Patient.text.status", "narrative-status"),
    ("ContactPoint.system outside its ValueSet", _patient(telecom=[{"system": "pager2", "value": "1"}]),
     "Patient.telecom[0].system", "contact-point-system"),
    # -- narrative: txt-1 (only basic XHTML, no active content) and txt-2 (some non-whitespace content) --
    ("script in narrative", _narrative(f'<div {XHTML}><script>alert(1)</script></div>'),
     "Patient.text.div", "txt-1"),
    ("event handler in narrative", _narrative(f'<div {XHTML}><img src="x.png" onerror="alert(1)"/></div>'),
     "Patient.text.div", "txt-1"),
    ("javascript: link in narrative", _narrative(f'<div {XHTML}><a href="javascript:alert(1)">x</a></div>'),
     "Patient.text.div", "txt-1"),
    ("javascript: link with entity tricks", _narrative(
        f'<div {XHTML}><a href=" jav&#x09;ascript:alert(1)">x</a></div>'), "Patient.text.div", "txt-1"),
    ("iframe in narrative", _narrative(f'<div {XHTML}><iframe src="https://example.org"></iframe></div>'),
     "Patient.text.div", "txt-1"),
    ("form in narrative", _narrative(f'<div {XHTML}><form action="x"><input name="a"/></form></div>'),
     "Patient.text.div", "txt-1"),
    ("style element in narrative", _narrative(f'<div {XHTML}><style>p{{color:red}}</style><p>x</p></div>'),
     "Patient.text.div", "txt-1"),
    ("narrative not in the XHTML namespace", _narrative("<div><p>x</p></div>"), "Patient.text.div", "txt-1"),
    ("narrative not a div", _narrative(f'<p {XHTML}>x</p>'), "Patient.text.div", "txt-1"),
    ("narrative not well-formed", _narrative(f'<div {XHTML}><p>x</div>'), "Patient.text.div", "txt-1"),
    ("narrative with no content", _narrative(f'<div {XHTML}>  </div>'), "Patient.text.div", "txt-2"),
    ("narrative with a DOCTYPE", _narrative(f'<!DOCTYPE div><div {XHTML}><p>x</p></div>'),
     "Patient.text.div", "txt-1"),
]
