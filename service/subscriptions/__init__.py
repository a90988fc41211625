"""R4 rest-hook Subscriptions (https://hl7.org/fhir/R4/subscription.html): criteria as a search, notifications
to an http(s) endpoint, durable deliveries with retries, and only of what the subscriber may see.

- `spec.py`: what a Subscription may ask for (422 for anything else); `rules.py`: the Subscription write rule
  (checks, status `active` at once);
- `matching.py`: the store's write listener: the registry (`tables.py`) follows the Subscription resources, and
  a matching create or update, decided as the subscription's owner through the Repository, queues a delivery in
  the write's own transaction;
- `worker.py` / `notification.py`: the delivery worker (a thread per serve process) and the HTTP requests;
- `owner.py`: who a subscription runs as; `settings.py`: `SHAREDCARE_SUBSCRIPTION_*`.

Not the R4 Subscriptions Backport (topic-based): plain R4 criteria subscriptions; only the Backport's
payload-content extension is understood, to ask for id-only notifications.
"""

from __future__ import annotations

from typing import Any

from service.subscriptions.matching import Matcher
from service.subscriptions.rules import SubscriptionRules
from service.subscriptions.settings import SubscriptionSettings
from service.subscriptions.worker import Notifier

__all__ = ["SubscriptionSettings", "Subscriptions"]


class Subscriptions:
    """The process's subscription machinery, wired into the services by `install` (service.bootstrap)."""

    def __init__(self, settings: SubscriptionSettings, demo: bool = False) -> None:
        self.settings = settings  # (tests may replace it: the worker reads it on every round)
        self.demo = demo
        self.services: Any = None
        self.notifier = Notifier(self)
        self.matcher = Matcher(lambda: self.services, self.notifier.wake)
        self.rules = SubscriptionRules(lambda: self.settings.allow_http or self.demo)

    def install(self, services: Any) -> None:
        self.services = services
        services.store.listeners.append(self.matcher)  # (after the search index and care relationships)
        services.store.first_query = self.matcher  # (a create's own insert reads the subscriptions it may match)
        services.rules.add("Subscription", self.rules)
        services.app_installers.append(lambda app: self.notifier.serve())  # each serve process sends
