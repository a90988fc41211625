"""The scope guard: enforces SMART scopes per interaction and per resource (the Guard protocol in
service/access/guard.py).

- `check_type`: before any storage access, 403 unless some scope grants the interaction's permission
  (c r u d s) on the type.
- `can_see` / `check_resource`: per resource. A permission that comes from a `patient/` scope holds only
  inside the Patient compartment of the token's patient (for non-patient data such as Organization or
  Questionnaire, `patient/` scopes give read and search only); a scope with `?param=value` restrictions
  holds only for resources that match them.
- `search_filter`: the same confinement as a query condition for the search engine, so a patient-context
  search never even reads other patients' rows.

The consent/care-relationship policy composes on top of this guard (`PolicyGuard(inner=ScopeGuard())`):
every method here is side-effect free and answers for scopes only.
"""

from __future__ import annotations

from typing import Any

from service.access.context import Principal, RequestContext
from service.auth.compartment import in_compartment, is_patient_data
from service.auth.restrictions import matches
from service.auth.scopes import Scope, ScopeSet, interaction_perm
from service.fhir.outcome import OperationOutcomeError, forbidden

INTERNAL_SUBJECT = "sharedcare-internal"
READ_PERMS = ("r", "s")


def unauthenticated(realm: str, description: str = "This request needs a bearer token") -> OperationOutcomeError:
    return OperationOutcomeError(401, "login", description, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


def _scopes(p: Principal) -> ScopeSet | None:
    if p.scopes is None and p.subject == INTERNAL_SUBJECT:
        return None  # RequestContext.system(): internal tools, fully trusted
    return p.scopes if isinstance(p.scopes, ScopeSet) else ScopeSet()


class ScopeGuard:
    def __init__(self, realm: str = "sharedcare") -> None:
        self.realm = realm

    def _principal(self, ctx: RequestContext) -> Principal:
        if ctx.principal is None:
            raise unauthenticated(self.realm)
        return ctx.principal

    # -- Guard protocol -----------------------------------------------------------------------------------
    def check_type(self, ctx: RequestContext, interaction: str, rtype: str | None) -> None:
        p = self._principal(ctx)
        scopes = _scopes(p)
        perm = interaction_perm(interaction)
        if scopes is None or perm is None:
            return
        if not scopes.allows(perm, rtype):
            what = rtype or "any resource type"
            raise forbidden(f"The access token's scopes do not allow {interaction} on {what} "
                            f"(it needs a scope such as user/{rtype or '*'}.{perm})")

    def check_resource(self, ctx: RequestContext, interaction: str, rtype: str, resource: dict[str, Any]) -> None:
        p = self._principal(ctx)
        perm = interaction_perm(interaction) or "r"
        if not self.permits(p, perm, rtype, resource):
            raise forbidden(f"The access token's scopes do not allow {interaction} on this {rtype}: it is outside "
                            f"the token's {self._limits(p, perm, rtype)}")

    def can_see(self, ctx: RequestContext, rtype: str, resource: dict[str, Any]) -> bool:
        if ctx.principal is None:
            return False
        return any(self.permits(ctx.principal, perm, rtype, resource) for perm in READ_PERMS)

    def search_filter(self, ctx: RequestContext, rtype: str) -> Any:
        """A condition confining a search to what the scopes allow, or None when they allow every row.

        Only patient-context confinement is pushed down (restrictions are checked per resource by can_see).
        """
        from service.auth.search_filter import patient_filter

        p = self._principal(ctx)
        return patient_filter(self, p, rtype)

    # -- answers for scopes only ----------------------------------------------------------------------------
    def permits(self, p: Principal, perm: str, rtype: str, resource: dict[str, Any]) -> bool:
        scopes = _scopes(p)
        if scopes is None:
            return True
        return any(self.scope_permits(s, p, perm, rtype, resource) for s in scopes.matching(perm, rtype))

    @staticmethod
    def scope_permits(s: Scope, p: Principal, perm: str, rtype: str, resource: dict[str, Any]) -> bool:
        if s.context == "patient":
            if not p.patient:
                return False
            if is_patient_data(rtype):
                if not in_compartment(rtype, resource, p.patient):
                    return False
            elif perm not in READ_PERMS:
                return False
        return not s.params or matches(resource, s.params)

    @staticmethod
    def _limits(p: Principal, perm: str, rtype: str) -> str:
        scopes = _scopes(p)
        found = scopes.matching(perm, rtype) if scopes is not None else []
        if found and all(s.context == "patient" for s in found):
            return f"patient context (Patient/{p.patient})" if p.patient else "patient context (none was given)"
        return "scope restrictions"
