"""Fixtures for the bulk export tests: the demo record, callers with real tokens, and the background export
worker stopped (the tests run the queue by hand, with `support.run_worker`, so each step can be seen)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.support import As


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    worker = demo.export_worker
    worker.stop.set()  # (the thread of this process: it ends at its next look)
    thread = worker._thread._thread
    if thread is not None:
        thread.join(timeout=30)
    return {"ada": As(client, auth_headers()), "gp": As(client, auth_headers(client="gp-system")),
            "gary": As(client, auth_headers("gp.gary")), "nina": As(client, auth_headers("nurse.nina"))}


@pytest.fixture
def policy(demo):  # type: ignore[no-untyped-def]
    """The installed PolicyGuard; tests that change its settings restore them."""
    guard = demo.policy
    saved = guard.settings
    yield guard
    guard.settings = saved
