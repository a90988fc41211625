"""The scope guard: what the token's SMART scopes allow, per interaction and per resource, and the same as a
search condition. Side-effect free; the access policy (service.policy) composes on top of it.

- `check_type`: before any storage access, 403 unless some scope grants the interaction's permission
  (c r u d s) on the type.
- `permits`: per resource. A permission from a `patient/` scope holds only for resources owned by the
  token's patient (service.ownership; for types that never hold a person's data, `patient/` scopes give read
  and search only); a scope with `?param=value` restrictions holds only for resources that match them.
- `search_filter`: the same as SQL for the search engine (patient confinement and the restrictions as search
  criteria), so totals, includes and paging never count what the scopes do not reach.
"""

from __future__ import annotations

from typing import Any

from service.access.context import Principal, RequestContext
from service.auth.restrictions import matches
from service.auth.scopes import Scope, ScopeSet, interaction_perm
from service.fhir.outcome import OperationOutcomeError, forbidden
from service.ownership import is_patient_data
from service.search.filter import ScopeClause, SearchFilter

READ_PERMS = ("r", "s")


def unauthenticated(realm: str, description: str = "This request needs a bearer token") -> OperationOutcomeError:
    return OperationOutcomeError(401, "login", description, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


def _scopes(p: Principal) -> ScopeSet | None:
    if p.scopes is None and p.subject == "sharedcare-internal":
        return None  # RequestContext.system(): internal tools, fully trusted
    return p.scopes if isinstance(p.scopes, ScopeSet) else ScopeSet()


class ScopeGuard:
    def __init__(self, realm: str = "sharedcare") -> None:
        self.realm = realm

    def principal(self, ctx: RequestContext) -> Principal:
        if ctx.principal is None:
            raise unauthenticated(self.realm)
        return ctx.principal

    def check_type(self, ctx: RequestContext, interaction: str, rtype: str | None) -> None:
        p = self.principal(ctx)
        scopes = _scopes(p)
        perm = interaction_perm(interaction)
        if scopes is None or perm is None:
            return
        if not scopes.allows(perm, rtype):
            what = rtype or "any resource type"
            raise forbidden(f"The access token's scopes do not allow {interaction} on {what} "
                            f"(it needs a scope such as user/{rtype or '*'}.{perm})")

    def reaches(self, ctx: RequestContext, perms: tuple[str, ...], rtype: str, resource: dict[str, Any],
                owners: tuple[str, ...]) -> bool:
        p = ctx.principal
        return p is not None and any(self.permits(p, perm, rtype, resource, owners) for perm in perms)

    def permits(self, p: Principal, perm: str, rtype: str, resource: dict[str, Any], owners: tuple[str, ...]) -> bool:
        scopes = _scopes(p)
        if scopes is None:
            return True
        return any(self._scope_permits(s, p, perm, rtype, resource, owners) for s in scopes.matching(perm, rtype))

    @staticmethod
    def _scope_permits(s: Scope, p: Principal, perm: str, rtype: str, resource: dict[str, Any],
                       owners: tuple[str, ...]) -> bool:
        if s.context == "patient":
            if not p.patient:
                return False
            if is_patient_data(rtype):
                if p.patient not in owners:
                    return False
            elif perm not in READ_PERMS:
                return False
        return not s.params or matches(resource, s.params)

    def limits(self, p: Principal, perm: str, rtype: str) -> str:
        scopes = _scopes(p)
        found = scopes.matching(perm, rtype) if scopes is not None else []
        if found and all(s.context == "patient" for s in found):
            return f"patient context (Patient/{p.patient})" if p.patient else "patient context (none was given)"
        return "scope restrictions"

    def search_filter(self, ctx: RequestContext, rtype: str) -> SearchFilter | None:
        """What the scopes reach of `rtype`, for the search engine (None: every row)."""
        p = self.principal(ctx)
        scopes = _scopes(p)
        if scopes is None:
            return None
        granting = list(dict.fromkeys(s for perm in READ_PERMS for s in scopes.matching(perm, rtype)))
        if not granting:
            return SearchFilter.deny()
        clauses = []
        for s in granting:
            patient = None
            if s.context == "patient" and is_patient_data(rtype):
                if not p.patient:
                    continue
                patient = p.patient
            if patient is None and not s.params:
                return None  # this scope reaches every row
            clauses.append(ScopeClause(patient=patient, criteria=s.params))
        return SearchFilter(scopes=tuple(clauses)) if clauses else SearchFilter.deny()
