"""The consent policy decision point (PDP): pure functions, frozen dataclasses in, a frozen `Decision` out.

No I/O, no clock, no framework: ``now`` and every fact are passed in (import-linter forbids ``service``,
fastapi, starlette, sqlmodel, sqlalchemy and httpx here). The semantics are
``shared/docs/consent-semantics.md`` (algorithm A, worked cases B, edge rules C).

Shape::

    parsed = parse_consent(consent_json, base_urls=(FHIR_BASE,))    # once per stored Consent
    problems = validate_consent(consent_json, base_urls=(FHIR_BASE,))  # on write: [] or "path: problem"
    decision = decide(Request(patient="Patient/p1", nhs_number="9434765919",
                              actor=Actor(kind="practitioner", keys={"Practitioner/dr-a", "Organization/rr8"},
                                          identifiers={"https://fhir.nhs.uk/Id/ods-organization-code|RR8"}),
                              purposes=("TREAT",), now=now,
                              resource=ResourceFacts(type="Observation", id="o1", security={...},
                                                     author_keys={"Organization/gp5"}, date=...)),
                      [parsed, ...], Config())
    decision.verdict      # "PERMIT" | "DENY"
    decision.basis        # "Consent/<id>" | "default:<rule>" | "rule:<name>"
    decision.break_glass  # a PERMIT that depends on BTG: audit it and queue it for review
    decision.reasons      # the trail: which provision or rule decided

Resource mode (``Request.resource`` set) decides one resource. Request mode (``resource=None``, optionally
``resource_type`` for a typed search) plans a search: DENY when no resource could be permitted, else
PERMIT with ``REDACT`` `Obligation`s describing exactly what resource mode would deny; `filter_allows`
applies them to one resource (the service's backstop after a SQL-level filter). The invariant
``filter_allows(decide(plan), r) == (decide(resource=r).verdict == PERMIT)`` holds for every resource.
Obligations speak in `Feature`s (``security``/``class``/``code`` tokens, ``instance``/``related``/``author``
references, ``date`` ranges) and carry ``unless_authored_by``: the requester organisation's keys, whose
own records rule 2c keeps whatever the consent says. So a direct-care search is never denied outright
(it may get "drop everything not authored by us"); a proxy's, a patient's or a secondary-use search is.

Bases: ``rule:nopat`` (2a), ``rule:patient-own-record`` (2b), ``rule:own-record`` (2c), ``rule:admin``
(operators, any non-secondary purpose), ``rule:uncomputable`` (5), ``rule:btg-override`` (9),
``rule:too-complex`` (request mode only: the service should decide per resource), ``Consent/<id>``,
``default:direct-care | secondary-use | ndoo | proxy | no-basis`` (8).

Modules: `model` (dataclasses), `codes` (code systems, aliasing, value sets), `time` (Europe/London
partial dates), `parse` (Consent JSON -> `ParsedConsent`, `validate_consent`), `logic` (the boolean
algebra behind request mode), `decide` (the algorithm).
"""

from consent.decide import decide, filter_allows
from consent.model import (
    ADMIN,
    DEFAULT_CONFIG,
    DENY,
    PATIENT,
    PERMIT,
    PRACTITIONER,
    RELATED_PERSON,
    SYSTEM,
    Actor,
    Condition,
    Config,
    Decision,
    Feature,
    Obligation,
    Request,
    ResourceFacts,
)
from consent.parse import ParsedConsent, parse_consent, validate_consent

__all__ = [
    "ADMIN",
    "DEFAULT_CONFIG",
    "DENY",
    "PATIENT",
    "PERMIT",
    "PRACTITIONER",
    "RELATED_PERSON",
    "SYSTEM",
    "Actor",
    "Condition",
    "Config",
    "Decision",
    "Feature",
    "Obligation",
    "ParsedConsent",
    "Request",
    "ResourceFacts",
    "decide",
    "filter_allows",
    "parse_consent",
    "validate_consent",
]
