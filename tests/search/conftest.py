"""Search tests exercise search semantics as a fully trusted caller (the internal system context, the
AllowAll guard): identity and consent are tested in their own suites. `guarded_client(guard)` runs a
test with a given guard (to check the SearchFilter contract)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def _trusted(services: Any, guard: Any) -> Iterator[None]:
    saved_guard, saved_auth = services.guard, services.extras.get("authenticate")
    services.guard = guard
    services.extras.pop("authenticate", None)
    try:
        yield
    finally:
        services.guard = saved_guard
        if saved_auth is not None:
            services.extras["authenticate"] = saved_auth


@pytest.fixture
def client(clean_services, settings):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from service.access.guard import AllowAll
    from service.api.app import create_app

    with _trusted(clean_services, AllowAll()), TestClient(create_app(settings, services=clean_services),
                                                          base_url="http://testserver") as c:
        yield c


@pytest.fixture
def guarded(clean_services):  # type: ignore[no-untyped-def]
    """`with guarded(guard): ...` swaps the guard for the block (the client fixture must be active)."""

    @contextmanager
    def swap(guard: Any) -> Iterator[None]:
        saved = clean_services.guard
        clean_services.guard = guard
        try:
            yield
        finally:
            clean_services.guard = saved

    return swap
