"""Fixtures: the demo record loaded, and API callers holding real access tokens of the demo users."""

from __future__ import annotations

import pytest

from tests.workflows.support import As


@pytest.fixture
def demo(clean_services):  # type: ignore[no-untyped-def]
    """The demo records, identities and published forms (`sharedcare demo load`) in a clean database."""
    from service.demo.loader import LOADERS, load_records

    load_records(clean_services)
    for step in LOADERS:
        step(clean_services)
    return clean_services


@pytest.fixture
def users(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    """nurse.nina (community trust), social.sam (council), coord.cara (care coordinator), gp.gary, ward.wes,
    admin.ada: each an `As` caller sending their own real access token."""
    names = {"nina": "nurse.nina", "sam": "social.sam", "cara": "coord.cara", "gary": "gp.gary",
             "wes": "ward.wes", "ada": "admin.ada", "pat": "patient.pat"}
    return {short: As(client, auth_headers(user)) for short, user in names.items()}
