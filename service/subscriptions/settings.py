"""Subscription settings (`SHAREDCARE_SUBSCRIPTION_*`): the subscriptions' view of `service.config.Settings`, which
reads and validates them (the README's "Subscriptions" lists them)."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings, get_settings


@dataclass(frozen=True)
class SubscriptionSettings:
    worker: bool = True  # run the delivery worker thread in each serve process
    poll_seconds: float = 1.0  # how often an idle worker looks for due deliveries
    retry_seconds: float = 10.0  # the first retry's delay; each further retry waits twice as long
    max_retry_seconds: float = 3600.0  # the longest wait between two attempts
    max_attempts: int = 6  # attempts of one notification before the subscription's status becomes `error`
    timeout_seconds: float = 10.0  # connect + response time allowed to an endpoint per attempt
    lease_seconds: float = 120.0  # a claimed delivery whose worker died is due again after this long
    allow_http: bool = False  # plain http endpoints beyond loopback (demo mode allows them too)

    @classmethod
    def load(cls, settings: Settings | None = None) -> SubscriptionSettings:
        s = settings or get_settings()
        return cls(
            worker=s.subscription_worker,
            poll_seconds=s.subscription_poll_seconds,
            retry_seconds=s.subscription_retry_seconds,
            max_retry_seconds=s.subscription_max_retry_seconds,
            max_attempts=s.subscription_max_attempts,
            timeout_seconds=s.subscription_timeout_seconds,
            lease_seconds=s.subscription_lease_seconds,
            allow_http=s.allow_insecure_http,
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (exponential backoff, capped)."""
        return float(min(self.retry_seconds * (2 ** max(attempts - 1, 0)), self.max_retry_seconds))
