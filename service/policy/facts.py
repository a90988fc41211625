"""What the policy decision point (`consent/`) is told: the actor from the request context and the facts of
one resource from its stored JSON. The same facts back the SQL filter (`sqlfilter.py`), which reads them
from the search indexes: `meta.security` (`_security`), the resource's `code` (`code`), its references
(any reference parameter), its authoring organisations (`authoring-organisation`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from consent import PATIENT, PRACTITIONER, RELATED_PERSON, SYSTEM, Actor, ResourceFacts
from consent.model import ADMIN
from service.access.context import ODS, Principal
from service.policy.authorship import author_keys
from service.search.values import date_range

KINDS = {"practitioner": PRACTITIONER, "patient": PATIENT, "relatedPerson": RELATED_PERSON, "system": SYSTEM,
         "admin": ADMIN, "ig": "ig"}
# The clinically relevant date of a resource, for consents limited by dataPeriod (first one present).
DATE_ELEMENTS = ("effectiveDateTime", "effectiveInstant", "occurrenceDateTime", "performedDateTime", "onsetDateTime",
                 "recordedDate", "authoredOn", "issued", "date", "created", "sent", "recorded", "birthDate")
DATE_PERIODS = ("effectivePeriod", "occurrencePeriod", "performedPeriod", "period", "executionPeriod")


def actor_keys(p: Principal) -> frozenset[str]:
    """Every key the caller is known by: fhirUser, PractitionerRole, organisation reference and ODS code."""
    keys: set[str] = set()
    if p.fhir_user:
        keys.add(p.fhir_user)
    role = p.claims.get("practitioner_role") if isinstance(p.claims, dict) else None
    if isinstance(role, str) and role:
        keys.add(role)
    if p.organisation:
        keys.add(p.organisation)
    if p.ods_code:
        keys.add(f"{ODS}|{p.ods_code}")
    if p.kind == "patient" and p.patient:
        keys.add(f"Patient/{p.patient}")
    return frozenset(keys)


# principal object -> its Actor: an authenticated token's principal is the same object on its later requests
# (service.auth.authenticate's VerifiedTokens), and every decision asks for the caller's Actor
_ACTORS: dict[int, tuple[Principal, Actor]] = {}


def actor(p: Principal) -> Actor:
    found = _ACTORS.get(id(p))
    if found is not None and found[0] is p:  # (the principal is held: its id is not reused meanwhile)
        return found[1]
    made = _actor(p)
    if len(_ACTORS) >= 1024:
        _ACTORS.clear()
    _ACTORS[id(p)] = (p, made)
    return made


def _actor(p: Principal) -> Actor:
    keys = actor_keys(p)
    refs = frozenset(k for k in keys if "|" not in k)
    idents = frozenset(k for k in keys if "|" in k)
    org = frozenset(k for k in keys if k.startswith(("Organization/", ODS + "|")))
    return Actor(kind=KINDS.get(p.kind, p.kind), keys=refs, identifiers=idents, organisation=org)


def _tokens(codings: Any) -> set[str]:
    out: set[str] = set()
    for c in codings if isinstance(codings, list) else []:
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            out.add(f"{c.get('system') or ''}|{c['code']}")
    return out


def _codes(resource: dict[str, Any]) -> set[str]:
    code = resource.get("code")
    out: set[str] = set()
    for cc in code if isinstance(code, list) else [code]:
        if isinstance(cc, dict):
            out |= _tokens(cc.get("coding"))
    return out


def _references(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and "/" in ref and not ref.startswith("#"):
            parts = ref.split("/")
            if "_history" in parts:
                parts = parts[:parts.index("_history")]
            if len(parts) >= 2:
                out.add(f"{parts[-2]}/{parts[-1]}")
        for v in node.values():
            if isinstance(v, (dict, list)):
                _references(v, out)
    elif isinstance(node, list):
        for v in node:
            _references(v, out)


def resource_date(resource: dict[str, Any]) -> datetime | None:
    for name in DATE_ELEMENTS:
        v = resource.get(name)
        if isinstance(v, str) and (rng := date_range(v)) is not None:
            return datetime.fromtimestamp(rng[0] / 1_000_000, tz=UTC)
    for name in DATE_PERIODS:
        v = resource.get(name)
        if isinstance(v, dict) and isinstance(v.get("start"), str) and (rng := date_range(v["start"])) is not None:
            return datetime.fromtimestamp(rng[0] / 1_000_000, tz=UTC)
    return None


def resource_facts(rtype: str, resource: dict[str, Any]) -> ResourceFacts:
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    related: set[str] = set()
    _references({k: v for k, v in resource.items() if k not in ("meta", "extension", "contained")}, related)
    return ResourceFacts(type=rtype, id=resource.get("id") if isinstance(resource.get("id"), str) else None,
                         security=frozenset(_tokens(meta.get("security"))), codes=frozenset(_codes(resource)),
                         author_keys=author_keys(resource), date=resource_date(resource),
                         related=frozenset(related))


class Facts:
    """One resource's facts for the decision point. Without consents the decision reads only the labels and
    the authors (rules 2a-2c and the defaults), so the rest (codes, references, date: a walk over the whole
    resource) is worked out only for a person who has consents."""

    def __init__(self, rtype: str, resource: dict[str, Any], extra_authors: frozenset[str] = frozenset()) -> None:
        self.rtype, self.resource, self.extra = rtype, resource, extra_authors
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        self.light = ResourceFacts(type=rtype, id=resource.get("id") if isinstance(resource.get("id"), str) else None,
                                   security=frozenset(_tokens(meta.get("security"))),
                                   author_keys=author_keys(resource) | extra_authors)
        self._full: ResourceFacts | None = None

    def full(self) -> ResourceFacts:
        if self._full is None:
            f = resource_facts(self.rtype, self.resource)
            self._full = replace(f, author_keys=f.author_keys | self.extra) if self.extra else f
        return self._full

    def for_consents(self, consents: list[Any]) -> ResourceFacts:
        return self.full() if consents else self.light


def security_codes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    out = set()
    for c in meta.get("security") or []:
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            out.add((c.get("system") or "", c["code"]))
    return out
