"""UK identifier rules: NHS number (modulus 11) and ODS organisation codes."""

from __future__ import annotations

import re

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORG_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE_SYSTEM = "https://fhir.nhs.uk/Id/ods-site-code"

# ODS codes: 3 to 10 upper-case letters and digits (trusts RXX, practices A12345, sites RXX01,
# councils and social-care providers 3 characters or more such as 'E10000019' style or 'X1A2B').
ODS_RE = re.compile(r"^[A-Z0-9]{3,10}$")


def nhs_number_problem(value: object) -> str | None:
    """None when `value` is a valid NHS number, else why not (for an OperationOutcome)."""
    if not isinstance(value, str):
        return "an NHS number must be a string of ten digits"
    if not re.fullmatch(r"\d{10}", value):
        return f"NHS number {value!r} must be exactly ten digits with no spaces"
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return f"NHS number {value!r} is not valid: its first nine digits give no valid check digit"
    if check != int(value[9]):
        return f"NHS number {value!r} fails the modulus-11 check (check digit should be {check})"
    return None


def ods_code_problem(value: object) -> str | None:
    if not isinstance(value, str) or not ODS_RE.fullmatch(value):
        return (f"ODS code {value!r} is not well-formed: 3 to 10 upper-case letters and digits "
                "(e.g. RBZ, A81001, RBZ01)")
    return None
