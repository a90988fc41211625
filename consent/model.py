"""The PDP's inputs and outputs: frozen dataclasses, no behaviour beyond small derived values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from consent import codes
from consent.time import require_aware

Verdict = Literal["PERMIT", "DENY"]
PERMIT: Final = "PERMIT"
DENY: Final = "DENY"

# Actor kinds (Principal.kind in the service).
PRACTITIONER: Final = "practitioner"
PATIENT: Final = "patient"
RELATED_PERSON: Final = "relatedPerson"
SYSTEM: Final = "system"
ADMIN: Final = "admin"


def _fs(values: Iterable[str]) -> frozenset[str]:
    """Accept any iterable of strings (tests and callers often pass sets or lists)."""
    if isinstance(values, frozenset):
        return values
    if isinstance(values, str):
        return frozenset({values})
    return frozenset(values)


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who asks. ``keys``: literal references (``Organization/rr8``, ``Practitioner/dr-a``,
    ``PractitionerRole/…``); ``identifiers``: ``system|value`` (SDS user id, SDS role profile, ODS code);
    ``groups``: ``Group/…`` the person belongs to; ``organisation``: the keys (references or identifiers)
    of the organisation they act for. Organisation keys are also derived from ``keys`` (``Organization/…``)
    and ``identifiers`` (ODS codes), so listing them once is enough.
    """

    kind: str
    keys: frozenset[str] = frozenset()
    identifiers: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    organisation: frozenset[str] = frozenset()
    match_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    org_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys, groups = _fs(self.keys), _fs(self.groups)
        idents = codes.normalise_tokens(_fs(self.identifiers))
        org = _fs(self.organisation)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "identifiers", idents)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "organisation", org)
        everything = frozenset(codes.normalise_token(k) for k in keys | idents | groups | org)
        object.__setattr__(self, "match_keys", everything)
        derived = {k for k in everything if k.startswith(("Organization/", codes.ODS_CODE + "|"))}
        object.__setattr__(self, "org_keys", frozenset(derived) | codes.normalise_tokens(org))


@dataclass(frozen=True, kw_only=True)
class ResourceFacts:
    """What the PDP may know about one resource. Coded values are ``system|code`` tokens (normalised on
    construction). ``classes``: classes beyond the resource type (the type itself always counts as class
    ``http://hl7.org/fhir/resource-types|<type>``). ``author_keys``: references and identifiers of the
    authoring organisation(s)/people; empty means *unknown* (a missing attribute, A.4). ``date``: the
    relevant clinical date (aware; ``None`` = missing; use `consent.time.instant` for partial dates).
    ``related``: literal references the resource is related to (``Task/t3``, ``Encounter/e1``).
    """

    type: str
    id: str | None = None
    security: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    author_keys: frozenset[str] = frozenset()
    date: datetime | None = None
    related: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "security", codes.normalise_tokens(_fs(self.security)))
        object.__setattr__(self, "classes", codes.normalise_tokens(_fs(self.classes)))
        object.__setattr__(self, "codes", codes.normalise_tokens(_fs(self.codes)))
        object.__setattr__(self, "author_keys", frozenset(codes.normalise_token(k) for k in _fs(self.author_keys)))
        object.__setattr__(self, "related", _fs(self.related))
        if self.date is not None:
            require_aware(self.date, "ResourceFacts.date")

    @property
    def ref(self) -> str | None:
        return f"{self.type}/{self.id}" if self.id else None


@dataclass(frozen=True, kw_only=True)
class Request:
    """One question to the PDP. ``purposes``: v3-ActReason codes (``"TREAT"``) or tokens; every purpose
    must be permitted. ``resource=None`` is *request mode* (planning a search; ``resource_type`` is the
    searched type when there is one). ``now`` is always injected (aware).
    """

    patient: str
    actor: Actor
    now: datetime
    purposes: tuple[str, ...] = ()
    nhs_number: str | None = None
    action: str = "access"
    resource: ResourceFacts | None = None
    resource_type: str | None = None
    ndoo: bool = False

    def __post_init__(self) -> None:
        require_aware(self.now, "Request.now")
        if isinstance(self.purposes, str):
            object.__setattr__(self, "purposes", (self.purposes,))
        else:
            object.__setattr__(self, "purposes", tuple(self.purposes))


@dataclass(frozen=True, kw_only=True)
class Config:
    """Deployment policy switches. Purposes are bare v3-ActReason codes."""

    btg_override: bool = True
    direct_care_purposes: frozenset[str] = frozenset({"TREAT", "ETREAT", "BTG"})
    research_purposes: frozenset[str] = frozenset({"HRESCH"})
    planning_purposes: frozenset[str] = frozenset({"HOPERAT"})
    btg_purpose: str = "BTG"
    patient_own_actions: frozenset[str] = frozenset({"access"})
    admin_bypass: bool = True
    direct_care_kinds: frozenset[str] = frozenset({PRACTITIONER, SYSTEM})


DEFAULT_CONFIG: Final = Config()


@dataclass(frozen=True)
class Feature:
    """A fact a resource may carry: ``on`` is the dimension (``security``, ``class``, ``code``,
    ``instance``, ``related``, ``author``, ``date``); ``value`` a token or reference (for ``date`` the
    bounds as written). ``date`` features hold when the resource date is in ``[start, end)``.
    ``if_missing`` is the answer when the resource lacks the attribute (no author, no date, no id): true
    for features taken from deny provisions, false for permit provisions (A.4).
    """

    on: str
    value: str
    start: datetime | None = None
    end: datetime | None = None
    if_missing: bool = False

    @property
    def sort_key(self) -> tuple[str, str, str, str, bool]:
        return (self.on, self.value, self.start.isoformat() if self.start else "",
                self.end.isoformat() if self.end else "", self.if_missing)

    @property
    def code(self) -> str:
        return codes.code_of(self.value) if self.on in {"security", "class", "code"} else self.value

    def holds(self, r: ResourceFacts) -> bool:
        on = self.on
        if on == "security":
            return self.value in r.security
        if on == "class":
            return self.value in r.classes or self.value == codes.resource_type_token(r.type)
        if on == "code":
            return self.value in r.codes
        if on == "related":
            return self.value in r.related
        if on == "author":
            return self.value in r.author_keys if r.author_keys else self.if_missing
        if on == "instance":
            return self.value == r.ref if r.id else self.if_missing
        if on == "date":
            if r.date is None:
                return self.if_missing
            return (self.start is None or self.start <= r.date) and (self.end is None or r.date < self.end)
        raise ValueError(f"unknown feature dimension {on!r}")


def _carries_any(features: frozenset[Feature], r: ResourceFacts) -> bool:
    return any(f.holds(r) for f in features)


@dataclass(frozen=True)
class Condition:
    """The resource carries at least one of ``any_of`` (or, with ``negate``, none of them)."""

    any_of: frozenset[Feature]
    negate: bool = False

    def holds(self, r: ResourceFacts) -> bool:
        return _carries_any(self.any_of, r) != self.negate


@dataclass(frozen=True)
class Obligation:
    """``REDACT``: drop the resources that match (A.10). Exactly one form is used:

    - ``codes``: drop a resource carrying any of them;
    - ``except_any_of_codes``: keep only resources carrying one of them;
    - ``all_of``: drop a resource for which every condition holds (no conditions = drop every resource).

    ``unless_authored_by``: never drop a resource whose author keys meet these (rule 2c, own record).
    ``basis``: the consent or rule whose denial the obligation carries out.
    """

    kind: str = "REDACT"
    codes: frozenset[Feature] = frozenset()
    except_any_of_codes: frozenset[Feature] = frozenset()
    all_of: tuple[Condition, ...] = ()
    unless_authored_by: frozenset[str] = frozenset()
    basis: str = ""

    def __post_init__(self) -> None:
        if bool(self.codes) + bool(self.except_any_of_codes) + bool(self.all_of) > 1:
            raise ValueError("an Obligation uses exactly one of codes, except_any_of_codes, all_of")

    @property
    def form(self) -> str:
        if self.codes:
            return "codes"
        if self.except_any_of_codes:
            return "exceptAnyOfCodes"
        return "allOf"

    def drops(self, r: ResourceFacts) -> bool:
        if self.unless_authored_by and self.unless_authored_by & r.author_keys:
            return False
        if self.codes:
            return _carries_any(self.codes, r)
        if self.except_any_of_codes:
            return not _carries_any(self.except_any_of_codes, r)
        return all(c.holds(r) for c in self.all_of)


@dataclass(frozen=True)
class Decision:
    """The answer. ``basis``: ``Consent/<id>`` | ``default:<rule>`` | ``rule:<name>``. ``reasons``: the trail
    (which provision matched, which consents were considered). A DENY carries no obligations.
    """

    verdict: Verdict
    basis: str
    obligations: tuple[Obligation, ...] = ()
    break_glass: bool = False
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in (PERMIT, DENY):
            raise ValueError(f"verdict must be PERMIT or DENY, not {self.verdict!r}")
        if self.verdict == DENY and self.obligations:
            raise ValueError("a DENY carries no obligations")

    @property
    def permitted(self) -> bool:
        return self.verdict == PERMIT
