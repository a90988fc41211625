"""Subscription settings from the environment (`SHAREDCARE_SUBSCRIPTION_*`), validated once with service.config's
helpers (kept beside the subscriptions; the README's "Subscriptions" lists them)."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import _bool, _float, _int


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
    def load(cls) -> SubscriptionSettings:
        return cls(
            worker=_bool("SHAREDCARE_SUBSCRIPTION_WORKER", True),
            poll_seconds=_float("SHAREDCARE_SUBSCRIPTION_POLL_SECONDS", 1.0, 0.01, 60.0),
            retry_seconds=_float("SHAREDCARE_SUBSCRIPTION_RETRY_SECONDS", 10.0, 0.01, 3600.0),
            max_retry_seconds=_float("SHAREDCARE_SUBSCRIPTION_MAX_RETRY_SECONDS", 3600.0, 0.01, 86400.0),
            max_attempts=_int("SHAREDCARE_SUBSCRIPTION_MAX_ATTEMPTS", 6),
            timeout_seconds=_float("SHAREDCARE_SUBSCRIPTION_TIMEOUT_SECONDS", 10.0, 0.1, 300.0),
            lease_seconds=_float("SHAREDCARE_SUBSCRIPTION_LEASE_SECONDS", 120.0, 1.0, 3600.0),
            allow_http=_bool("SHAREDCARE_ALLOW_INSECURE_HTTP"),
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (exponential backoff, capped)."""
        return float(min(self.retry_seconds * (2 ** max(attempts - 1, 0)), self.max_retry_seconds))
