"""SMART on FHIR scopes, parsed (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

v2: `(patient|user|system)/(Type|*).[c][r][u][d][s]` with optional `?param=value&...` restrictions;
v1: `.read` (= rs), `.write` (= cud), `.*` (= cruds). Anything else (openid, fhirUser, launch/patient,
offline_access, ...) is kept as a plain "other" scope.

Interactions map to permissions as SMART 2.0 says: c create; r read, vread, instance history;
u update, patch; d delete; s type/system search and type/system history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from service.fhir.types import RESOURCE_TYPES

PERMS = "cruds"
CONTEXTS = ("patient", "user", "system")
V1 = {"read": "rs", "write": "cud", "*": "cruds"}
RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?$")
OTHER_SCOPES = {"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access",
                "online_access"}

INTERACTION_PERM = {
    "read": "r", "vread": "r", "history-instance": "r",
    "create": "c", "update": "u", "patch": "u", "delete": "d",
    "search-type": "s", "search-system": "s", "search-compartment": "s", "history-type": "s", "history-system": "s",
}


class ScopeError(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    context: str  # patient | user | system
    rtype: str  # a resource type or "*"
    perms: frozenset[str]
    params: tuple[tuple[str, str], ...] = ()  # ?param=value restrictions (all must hold)

    def covers_type(self, rtype: str | None) -> bool:
        return self.rtype == "*" or rtype is None or self.rtype == rtype

    def text(self) -> str:
        perms = "".join(p for p in PERMS if p in self.perms)
        query = "?" + "&".join(f"{k}={v}" for k, v in self.params) if self.params else ""
        return f"{self.context}/{self.rtype}.{perms}{query}"


def parse_scope(raw: str) -> Scope | None:
    """A resource scope, or None for a non-resource scope. Raises ScopeError for a malformed resource scope."""
    m = RESOURCE_SCOPE.match(raw)
    if not m:
        if raw.startswith(CONTEXTS) and "/" in raw:
            raise ScopeError(f"{raw!r} is not a SMART resource scope such as patient/Observation.rs")
        return None
    context, rtype, perms, query = m.groups()
    if rtype != "*" and rtype not in RESOURCE_TYPES:
        raise ScopeError(f"{raw!r} names {rtype!r}, which is not a FHIR R4 resource type")
    if perms in V1:
        if query:
            raise ScopeError(f"{raw!r}: ?param restrictions need v2 permissions (e.g. .rs), not .{perms}")
        perms = V1[perms]
    else:
        order = [PERMS.index(p) if p in PERMS else -1 for p in perms]
        if -1 in order or order != sorted(set(order)):
            raise ScopeError(f"{raw!r}: permissions must be some of c, r, u, d, s in that order")
    params: tuple[tuple[str, str], ...] = ()
    if query:
        pairs = parse_qsl(query[1:], keep_blank_values=True)
        if not pairs or any(not k or not v for k, v in pairs):
            raise ScopeError(f"{raw!r}: the restriction must be ?param=value[&param=value]")
        params = tuple(sorted(pairs))
    return Scope(context, rtype, frozenset(perms), params)


@dataclass(frozen=True)
class ScopeSet:
    resource: tuple[Scope, ...] = ()
    other: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> ScopeSet:
        resource: list[Scope] = []
        other: set[str] = set()
        for raw in (text or "").split():
            s = parse_scope(raw)
            if s is None:
                other.add(raw)
            elif s not in resource:
                resource.append(s)
        return cls(tuple(resource), frozenset(other))

    def text(self) -> str:
        return " ".join([s.text() for s in self.resource] + sorted(self.other))

    def __bool__(self) -> bool:
        return bool(self.resource or self.other)

    def has(self, name: str) -> bool:
        return name in self.other

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.resource)

    def matching(self, perm: str, rtype: str | None, context: str | None = None) -> list[Scope]:
        """The scopes granting `perm` on `rtype` (None = any type), optionally of one context."""
        return [s for s in self.resource
                if perm in s.perms and s.covers_type(rtype) and (context is None or s.context == context)]

    def allows(self, perm: str, rtype: str | None) -> bool:
        return bool(self.matching(perm, rtype))

    def without_context(self, context: str) -> ScopeSet:
        return ScopeSet(tuple(s for s in self.resource if s.context != context), self.other)

    def grant(self, requested: ScopeSet) -> ScopeSet:
        """What may be granted of `requested` when `self` is the most this identity may have.

        A requested scope is narrowed to the permissions the ceiling gives for its context and type; a ceiling
        scope with restrictions covers only requests carrying at least those restrictions.
        """
        out: list[Scope] = []
        for req in requested.resource:
            allowed: set[str] = set()
            for ceil in self.resource:
                if ceil.context != req.context or not (ceil.rtype == "*" or ceil.rtype == req.rtype):
                    continue
                if not set(ceil.params) <= set(req.params):
                    continue
                allowed |= ceil.perms
            perms = req.perms & allowed
            if perms:
                narrowed = Scope(req.context, req.rtype, frozenset(perms), req.params)
                if narrowed not in out:
                    out.append(narrowed)
        return ScopeSet(tuple(out), requested.other & self.other)


def interaction_perm(interaction: str) -> str | None:
    """The SMART permission an interaction needs; None for those any authenticated caller may attempt
    (capabilities, batch/transaction envelopes: their entries are checked one by one)."""
    if interaction in INTERACTION_PERM:
        return INTERACTION_PERM[interaction]
    if interaction.startswith("operation"):
        return "r"
    return None
