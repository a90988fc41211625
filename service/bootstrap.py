"""The one bootstrap: every process-wide service built once, explicitly, as typed objects (service.wiring).

Order: settings -> database -> identity (keys, tokens, the scope guard) -> the access policy on the scope guard
-> search -> the store with its write listeners (search index, care relationships, the audit's append-only
rule) and stamper (authorship) -> the audit -> the write rules per type -> the operations registry.
"""

from __future__ import annotations

from service.config import Settings
from service.db import Database
from service.wiring import Services


def build_services(settings: Settings, db: Database | None = None) -> Services:
    from service import auth, workflows
    from service.audit.log import AuditLog
    from service.audit.seal import Sealer
    from service.auth.demo import load_identities
    from service.operations import Operations
    from service.policy import authorship, config, relationships
    from service.policy.guard import PolicyGuard
    from service.policy.recorder import AfterAccess
    from service.repository import WriteRules
    from service.search.engine import SearchEngine
    from service.storage.store import Store
    from service.subscriptions import Subscriptions, SubscriptionSettings
    from service.workflows import consent_rules, forms

    db = db or Database(settings)
    layer, authenticator = auth.build(settings)
    policy_settings = config.load(settings)
    policy = PolicyGuard(layer.guard, settings.fhir_base, policy_settings)
    authorship.register_search_param()
    search = SearchEngine(settings)
    audit = AuditLog(db, settings.var_dir / "audit-spool")
    store = Store(postgres=db.is_postgres,
                  listeners=[search.index_listener, relationships.Listener(policy_settings)],
                  stampers=[authorship.stamp], identified=search.patients_identified, first_rows=search.first_rows)
    rules = WriteRules()
    rules.add("Consent", consent_rules.ConsentRules())
    workflows.add_rules(rules)
    services = Services(settings=settings, db=db, store=store, search=search, policy=policy, auth=layer,
                        authenticator=authenticator, audit=audit, sealer=Sealer(db, settings, audit.maybe_flush),
                        after_access=AfterAccess(policy), rules=rules,
                        operations=Operations.from_modules(), loaders=[load_identities, forms.ensure_questionnaires])
    services.app_installers.append(auth.routes_installer(services))
    from service.export.install import installer as export_installer

    services.app_installers.append(export_installer(services))  # bulk export: file route and worker thread
    services.subscriptions = Subscriptions(SubscriptionSettings.load(settings), demo=settings.demo)
    services.subscriptions.install(services)  # (its write listener, Subscription rule and delivery worker)
    forms.ensure_questionnaires(services)  # best effort: a database not migrated yet gets them on first use
    return services
