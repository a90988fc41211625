"""Fixtures: the demo record loaded, and API callers holding real access tokens of the demo users."""

from __future__ import annotations

import pytest

from tests.workflows.support import As


@pytest.fixture
def demo(clean_services):  # type: ignore[no-untyped-def]
    """The demo records and the published forms (what `sharedcare demo load` writes) in a clean database.
    The demo users' accounts are not loaded: their tokens are issued directly (tests/conftest.py
    make_auth_headers) and verified without them, and hashing their passwords costs seconds per test."""
    from service.demo.loader import load_records
    from service.workflows.forms import ensure_questionnaires

    load_records(clean_services)
    ensure_questionnaires(clean_services)
    return clean_services


@pytest.fixture
def users(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    """nurse.nina (community trust), social.sam (council), coord.cara (care coordinator), gp.gary, ward.wes,
    admin.ada: each an `As` caller sending their own real access token."""
    names = {"nina": "nurse.nina", "sam": "social.sam", "cara": "coord.cara", "gary": "gp.gary",
             "wes": "ward.wes", "ada": "admin.ada", "pat": "patient.pat"}
    return {short: As(client, auth_headers(user)) for short, user in names.items()}
