"""The policy enforcement point: care relationships, consent decisions (the pure PDP in `consent/`),
break-glass and the National Data Opt-out, applied to every FHIR interaction through the Guard protocol."""

from __future__ import annotations

from typing import Any


def install(services: Any) -> Any:
    """Wire the policy in (after the identity layer, whose ScopeGuard it wraps):
    - `services.guard`: `PolicyGuard(inner=ScopeGuard)`;
    - the store stamps the authoring organisation on every write, and keeps `care_relationship` in step;
    - `extras["policy_after"]`: break-glass grants and flags, in the request's audit step;
    - the Consent write rules; the `authoring-organisation` search parameter; `extras["policy"]`.
    """
    from service.auth.guard import ScopeGuard
    from service.policy import authorship, config, consent_rules, guard, recorder, relationships

    settings = config.load()
    authorship.register_search_param()
    if authorship.stamp not in services.store.stampers:
        services.store.stampers.append(authorship.stamp)
    if not any(isinstance(x, relationships.Listener) for x in services.store.listeners):
        services.store.listeners.append(relationships.Listener(settings))
    inner = services.guard if isinstance(services.guard, ScopeGuard) else ScopeGuard(realm=services.settings.fhir_base)
    pg = guard.PolicyGuard(inner, services, settings)
    services.guard = pg
    services.extras["policy"] = pg
    services.extras["policy_after"] = recorder.AfterAccess(pg)
    hooks = services.extras.setdefault("write_hooks", {})
    if not any(isinstance(h, consent_rules.ConsentRules) for h in hooks.get("Consent", ())):
        hooks.setdefault("Consent", []).append(consent_rules.ConsentRules())
    return pg
