"""NHS number (modulus 11) and ODS code rules, as unit tests and through the API."""

from __future__ import annotations

import pytest

from fhir_profiles.identifiers import nhs_number_problem, ods_code_problem


@pytest.mark.parametrize("value", ["9434765919", "9449306753", "9000000009", "4010232137"])
def test_valid_nhs_numbers_pass(value):
    assert nhs_number_problem(value) is None


@pytest.mark.parametrize("value,fragment", [
    ("9434765918", "modulus-11"),            # wrong check digit
    ("943476591", "exactly ten digits"),     # nine digits
    ("943 476 5919", "exactly ten digits"),  # spaces
    ("94347659AB", "exactly ten digits"),
    ("1000000010", "no valid check digit"),  # remainder gives check 10: never valid
])
def test_invalid_nhs_numbers_say_why(value, fragment):
    problem = nhs_number_problem(value)
    assert problem is not None and fragment in problem


def test_check_digit_eleven_becomes_zero():
    # 401023211 -> weighted sum divisible by 11 -> 11 - 0 = 11 -> check digit 0
    total = sum(int(d) * w for d, w in zip("401023211", range(10, 1, -1)))
    assert total % 11 == 0
    assert nhs_number_problem("4010232110") is None
    assert "check digit should be 0" in nhs_number_problem("4010232111")


@pytest.mark.parametrize("value", ["RBZ", "A81001", "RBZ01", "E10000019"])
def test_well_formed_ods_codes(value):
    assert ods_code_problem(value) is None


@pytest.mark.parametrize("value", ["rbz", "R", "RB Z", "", "ABCDEFGHIJK", 12])
def test_malformed_ods_codes(value):
    assert ods_code_problem(value) is not None


def test_api_rejects_malformed_ods_code(client):
    org = {"resourceType": "Organization", "name": "X",
           "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "r b"}]}
    r = client.post("/fhir/Organization", json=org)
    assert r.status_code == 422
    assert "Organization.identifier[0].value" in r.json()["issue"][0]["diagnostics"]
