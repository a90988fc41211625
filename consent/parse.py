"""FHIR R4 Consent JSON -> a frozen, evaluation-ready `ParsedConsent` (parse once, decide many times).

Parsing never raises on bad input: what cannot be evaluated makes the consent *uncomputable* (it then
denies whenever its root applies, ``rule:uncomputable``), and every problem is recorded with its element
path. `validate_consent` returns those problems so the service can reject the consent on write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from consent import codes
from consent import time as ftime
from consent.model import Feature

MAX_PROVISIONS = 64


@dataclass(frozen=True)
class ActorRule:
    """A provision's ``actor`` element (its repetitions OR): keys matched against the requester, and
    author features for the CST/AUT roles (matched against the resource's authors, C1)."""

    requester: frozenset[str]
    authors: frozenset[Feature]


@dataclass(frozen=True)
class Provision:
    """One provision node. ``None`` = element absent (matches anything); an empty set matches nothing."""

    path: str
    type: str | None
    period: ftime.Interval | None = None
    purposes: frozenset[str] | None = None
    actions: frozenset[str] | None = None
    actor: ActorRule | None = None
    security: frozenset[Feature] | None = None
    classes: frozenset[Feature] | None = None
    codes: frozenset[Feature] | None = None
    data_period: frozenset[Feature] | None = None
    data: frozenset[Feature] | None = None
    children: tuple[Provision, ...] = ()

    @property
    def data_elements(self) -> tuple[frozenset[Feature], ...]:
        """The data-scope elements (open in request mode), each a set of alternatives."""
        return tuple(e for e in (self.security, self.classes, self.codes, self.data_period, self.data)
                     if e is not None)


@dataclass(frozen=True)
class ParsedConsent:
    id: str
    status: str
    patient_ref: str | None
    patient_nhs: str | None
    scopes: frozenset[str]
    date_time: datetime | None
    root: Provision | None
    uncomputable: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def basis(self) -> str:
        return f"Consent/{self.id}"

    @property
    def computable(self) -> bool:
        return not self.uncomputable

    @property
    def overridable(self) -> bool:
        """A direct-care objection (patient-privacy), which break-glass may override (A.9); a research
        consent is a secondary-use choice and is never overridden."""
        return codes.PATIENT_PRIVACY in self.scopes and codes.RESEARCH not in self.scopes


class _Problems:
    def __init__(self) -> None:
        self.all: list[str] = []
        self.fatal: list[str] = []

    def bad(self, path: str, message: str) -> None:
        self.all.append(f"{path}: {message}")

    def fail(self, path: str, message: str) -> None:
        self.bad(path, message)
        self.fatal.append(f"{path}: {message}")


def _items(value: Any, path: str, p: _Problems) -> list[Any] | None:
    """A repeating element: ``None`` when absent or empty, else its list."""
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        p.bad(path, "must be an array")
        return [value]
    return value


def _coding(c: Any, path: str, p: _Problems) -> str | None:
    if not isinstance(c, Mapping):
        p.bad(path, "must be a Coding object")
        return None
    system, code = c.get("system"), c.get("code")
    if not isinstance(code, str) or not code.strip():
        p.bad(f"{path}.code", "missing (codes are compared by system and code; display is ignored)")
        return None
    if not isinstance(system, str) or not system.strip():
        p.bad(f"{path}.system", f"missing for code {code!r} (codes are compared by system and code)")
    return codes.token(system if isinstance(system, str) else None, code)


def _check(tok: str | None, allowed: frozenset[str] | None, path: str, what: str, p: _Problems) -> None:
    if tok is not None and allowed is not None and tok not in allowed:
        p.bad(path, f"unknown {what} {tok!r}: it would match nothing")


def _codings(value: Any, path: str, p: _Problems, allowed: frozenset[str] | None = None,
             what: str = "code") -> frozenset[str] | None:
    items = _items(value, path, p)
    if items is None:
        return None
    out: set[str] = set()
    for i, c in enumerate(items):
        tok = _coding(c, f"{path}[{i}]", p)
        _check(tok, allowed, f"{path}[{i}]", what, p)
        if tok is not None:
            out.add(tok)
    return frozenset(out)


def _concept(cc: Any, path: str, p: _Problems, allowed: frozenset[str] | None = None,
             what: str = "code") -> set[str]:
    if not isinstance(cc, Mapping):
        p.bad(path, "must be a CodeableConcept object")
        return set()
    out: set[str] = set()
    for j, c in enumerate(_items(cc.get("coding"), f"{path}.coding", p) or []):
        tok = _coding(c, f"{path}.coding[{j}]", p)
        _check(tok, allowed, f"{path}.coding[{j}]", what, p)
        if tok is not None:
            out.add(tok)
    if not out:
        p.bad(path, "has no usable coding")
    return out


def _concepts(value: Any, path: str, p: _Problems, allowed: frozenset[str] | None = None,
              what: str = "code") -> frozenset[str] | None:
    items = _items(value, path, p)
    if items is None:
        return None
    out: set[str] = set()
    for i, cc in enumerate(items):
        out |= _concept(cc, f"{path}[{i}]", p, allowed, what)
    return frozenset(out)


def _time(value: Any, path: str, p: _Problems) -> ftime.FhirTime | None:
    try:
        t = ftime.parse(value)
    except ftime.FhirTimeError as exc:
        p.fail(path, str(exc))
        return None
    if t.has_time and not t.has_offset:
        p.bad(path, f"{value!r} has a time but no offset (C4: date-times must carry one)")
    if t.has_time and not t.has_seconds:
        p.bad(path, f"{value!r}: a FHIR dateTime with a time needs seconds")
    return t


def _period(value: Any, path: str, p: _Problems) -> ftime.Interval | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        p.fail(path, "must be a Period object")
        return None
    start = _time(value["start"], f"{path}.start", p) if value.get("start") is not None else None
    end = _time(value["end"], f"{path}.end", p) if value.get("end") is not None else None
    if value.get("start") is None and value.get("end") is None:
        p.bad(path, "a Period needs a start or an end")
    if start and end and start.start > end.start:
        p.bad(path, "start is after end")
    return ftime.Interval(start.start if start else None, end.end if end else None)


def _reference_keys(ref: Any, path: str, base_urls: tuple[str, ...], p: _Problems) -> set[str]:
    """The keys a Reference can be matched by: its literal reference and/or its identifier (C1)."""
    if not isinstance(ref, Mapping):
        p.bad(path, "must be a Reference object")
        return set()
    keys: set[str] = set()
    literal = ref.get("reference")
    if isinstance(literal, str) and literal.strip():
        norm = codes.normalise_reference(literal, base_urls)
        if "://" in norm or norm.startswith(("#", "urn:")):
            p.bad(f"{path}.reference", f"{literal!r} is not a reference to a resource on this server")
        keys.add(norm)
    ident = ref.get("identifier")
    if isinstance(ident, Mapping):
        system, value = ident.get("system"), ident.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            keys.add(codes.token(system, value))
        else:
            p.bad(f"{path}.identifier", "needs both system and value")
    if not keys:
        p.bad(path, "needs a reference or an identifier (the PDP never resolves display text)")
    return keys


def _actors(value: Any, path: str, base: tuple[str, ...], p: _Problems, deny: bool) -> ActorRule | None:
    items = _items(value, path, p)
    if items is None:
        return None
    requester: set[str] = set()
    authors: set[Feature] = set()
    for i, a in enumerate(items):
        ap = f"{path}[{i}]"
        if not isinstance(a, Mapping):
            p.bad(ap, "must be an object with role and reference")
            continue
        roles = _concept(a["role"], f"{ap}.role", p) if a.get("role") is not None else set()
        if a.get("role") is None:
            p.bad(f"{ap}.role", "required (1..1)")
        keys = _reference_keys(a.get("reference"), f"{ap}.reference", base, p)
        if roles & codes.AUTHOR_ROLES:
            authors |= {Feature("author", k, if_missing=deny) for k in keys}
        else:
            requester |= keys
    return ActorRule(frozenset(requester), frozenset(authors))


def _data(value: Any, path: str, base: tuple[str, ...], p: _Problems, deny: bool) -> frozenset[Feature] | None:
    items = _items(value, path, p)
    if items is None:
        return None
    out: set[Feature] = set()
    for i, d in enumerate(items):
        dp = f"{path}[{i}]"
        if not isinstance(d, Mapping):
            p.bad(dp, "must be an object with meaning and reference")
            continue
        meaning = d.get("meaning")
        keys = _reference_keys(d.get("reference"), f"{dp}.reference", base, p)
        if meaning == "dependents":
            p.fail(f"{dp}.meaning", "'dependents' cannot be evaluated without fetching (rule 5)")
        elif meaning == "instance":
            out |= {Feature("instance", k, if_missing=deny) for k in keys}
        elif meaning == "related":
            out |= {Feature("related", k) for k in keys}
        elif meaning == "authoredby":
            out |= {Feature("author", k, if_missing=deny) for k in keys}
        else:
            p.fail(f"{dp}.meaning", f"must be one of {sorted(codes.DATA_MEANINGS)}, not {meaning!r}")
    return frozenset(out)


def _classes(value: Any, path: str, p: _Problems, deny: bool) -> frozenset[Feature] | None:
    toks = _codings(value, path, p)
    if toks is None:
        return None
    for tok in toks:
        system, _, code = tok.rpartition("|")
        if system == codes.RESOURCE_TYPES and code not in codes.RESOURCE_TYPE_NAMES:
            p.bad(path, f"unknown resource type {code!r}")
    return frozenset(Feature("class", t) for t in toks)


def _provision(d: Any, path: str, base: tuple[str, ...], p: _Problems, count: list[int]) -> Provision:
    count[0] += 1
    if not isinstance(d, Mapping):
        p.fail(path, "must be a provision object")
        return Provision(path=path, type=None)
    t = d.get("type")
    if t is None:
        p.fail(f"{path}.type", "missing: every provision needs type permit or deny (rule 5)")
    elif t not in codes.PROVISION_TYPES:
        p.fail(f"{path}.type", f"must be permit or deny, not {t!r}")
        t = None
    deny = t != "permit"  # an untyped node is read conservatively, as a deny
    dp = _period(d.get("dataPeriod"), f"{path}.dataPeriod", p)
    data_period = None
    if dp is not None:
        raw = d.get("dataPeriod") or {}
        label = f"{raw.get('start') or ''}..{raw.get('end') or ''}"
        data_period = frozenset({Feature("date", label, dp.start, dp.end, if_missing=deny)})
    security = _codings(d.get("securityLabel"), f"{path}.securityLabel", p, codes.SECURITY_LABELS, "security label")
    code_toks = _concepts(d.get("code"), f"{path}.code", p)
    node = Provision(
        path=path,
        type=t,
        period=_period(d.get("period"), f"{path}.period", p),
        purposes=_codings(d.get("purpose"), f"{path}.purpose", p, codes.PURPOSES, "purpose of use"),
        actions=_concepts(d.get("action"), f"{path}.action", p, codes.ACTIONS, "consent action"),
        actor=_actors(d.get("actor"), f"{path}.actor", base, p, deny),
        security=None if security is None else frozenset(Feature("security", s) for s in security),
        classes=_classes(d.get("class"), f"{path}.class", p, deny),
        codes=None if code_toks is None else frozenset(Feature("code", c) for c in code_toks),
        data_period=data_period,
        data=_data(d.get("data"), f"{path}.data", base, p, deny),
    )
    children = tuple(_provision(c, f"{path}.provision[{i}]", base, p, count)
                     for i, c in enumerate(_items(d.get("provision"), f"{path}.provision", p) or []))
    return replace(node, children=children)


def _share_only(root: Provision) -> Provision:
    """C3: a root permit with a data scope ("share only this") becomes root(deny) › permit(that scope).

    The request-level elements (period, purpose, action, requester actors) stay on the root, which turns
    into a deny; the data scope (and an actor element naming authors) moves to a permit child that keeps
    the original exceptions. Resources outside the scope are then denied rather than left to the default.
    """
    moves_actor = root.actor is not None and bool(root.actor.authors)
    if root.type != "permit" or not (root.data_elements or moves_actor):
        return root
    child = replace(root, path=f"{root.path}(scope)", period=None, purposes=None, actions=None,
                    actor=root.actor if moves_actor else None)
    return replace(root, type="deny", security=None, classes=None, codes=None, data_period=None, data=None,
                   actor=None if moves_actor else root.actor, children=(child,))


def _patient(value: Any, base: tuple[str, ...], p: _Problems) -> tuple[str | None, str | None]:
    if not isinstance(value, Mapping):
        p.bad("Consent.patient", "required: whose consent this is")
        return None, None
    ref, nhs = None, None
    literal = value.get("reference")
    if isinstance(literal, str) and literal.strip():
        ref = codes.normalise_reference(literal, base)
        if not ref.startswith("Patient/"):
            p.bad("Consent.patient.reference", f"{literal!r} is not a Patient on this server")
    ident = value.get("identifier")
    if isinstance(ident, Mapping) and ident.get("system") == codes.NHS_NUMBER:
        nhs = str(ident.get("value") or "")
        if not codes.nhs_number_valid(nhs):
            p.bad("Consent.patient.identifier.value", f"{nhs!r} is not a valid NHS number")
    if ref is None and nhs is None:
        p.bad("Consent.patient", "needs a Patient reference or an NHS number identifier")
    return ref, nhs


def parse_consent(resource: Mapping[str, Any], *, base_urls: Iterable[str] = ()) -> ParsedConsent:
    """Parse a stored Consent (FHIR R4 JSON). Never raises for bad content; see `ParsedConsent.uncomputable`."""
    p = _Problems()
    base = tuple(base_urls)
    if not isinstance(resource, Mapping):
        p.fail("Consent", "not a JSON object")
        return ParsedConsent("", "", None, None, frozenset(), None, None, tuple(p.fatal), tuple(p.all))
    if resource.get("resourceType") != "Consent":
        p.bad("Consent.resourceType", f"must be 'Consent', not {resource.get('resourceType')!r}")
    status = resource.get("status")
    if status not in codes.CONSENT_STATUSES:
        p.bad("Consent.status", f"must be one of {sorted(codes.CONSENT_STATUSES)}, not {status!r}")
    scope = resource.get("scope")
    scopes = frozenset(_concept(scope, "Consent.scope", p, codes.SCOPES, "consent scope")) if scope else frozenset()
    if not scope:
        p.bad("Consent.scope", "required (patient-privacy or research)")
    if not isinstance(resource.get("category"), list) or not resource.get("category"):
        p.bad("Consent.category", "required (1..*)")
    patient_ref, nhs = _patient(resource.get("patient"), base, p)
    when = None
    if resource.get("dateTime") is None:
        p.fail("Consent.dateTime", "missing: consents are ordered by it (A.7)")
    else:
        t = _time(resource.get("dateTime"), "Consent.dateTime", p)
        when = t.start if t else None
    if not resource.get("policyRule") and not resource.get("policy"):
        p.bad("Consent.policyRule", "either policy or policyRule is required (ppc-1)")
    root = None
    notes: tuple[str, ...] = ()
    if not isinstance(resource.get("provision"), Mapping):
        p.fail("Consent.provision", "missing: the root provision decides applicability (rule 5)")
    else:
        count = [0]
        root = _provision(resource["provision"], "Consent.provision", base, p, count)
        if count[0] > MAX_PROVISIONS:
            p.bad("Consent.provision", f"{count[0]} provisions; at most {MAX_PROVISIONS} are accepted")
        encoded = _share_only(root)
        if encoded is not root:
            notes = ("root permit with a data scope read as root(deny) › permit(scope) (C3)",)
        root = encoded
    return ParsedConsent(
        id=str(resource.get("id") or ""),
        status=status if isinstance(status, str) else "",
        patient_ref=patient_ref,
        patient_nhs=nhs,
        scopes=scopes,
        date_time=when,
        root=root,
        uncomputable=tuple(p.fatal),
        problems=tuple(p.all),
        notes=notes,
    )


def validate_consent(resource: Mapping[str, Any], *, base_urls: Iterable[str] = ()) -> list[str]:
    """Problems (``"<element path>: <what is wrong>"``) that should reject the consent on write; [] if none."""
    return list(parse_consent(resource, base_urls=base_urls).problems)
