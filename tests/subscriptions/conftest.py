"""Subscription tests: the delivery worker made quick (polls every 50 ms, retries after 0.1 s, 3 attempts)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.subscriptions.receiver import Receiver


@pytest.fixture
def quick(services: Any) -> Iterator[Any]:
    hub = services.subscriptions
    saved = hub.settings
    hub.settings = replace(saved, poll_seconds=0.05, retry_seconds=0.1, max_retry_seconds=0.4, max_attempts=3)
    yield hub
    hub.notifier.stop(wait=15)  # (what it was sending is recorded before the next test cleans up; it polls
    # nothing in the tests that follow; the next app made starts it if needed)
    hub.settings = saved


@pytest.fixture
def receivers() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        r = Receiver(statuses)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture(scope="session", autouse=True)
def _worker_stops_with_the_database(services: Any) -> Iterator[None]:
    """The delivery worker of the session's services stops before its test database is dropped."""
    yield
    services.subscriptions.notifier.stop()
