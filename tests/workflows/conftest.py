"""Fixtures: the demo record loaded, and API callers holding real access tokens of the demo users."""

from __future__ import annotations

import pytest

from tests.workflows.support import As


@pytest.fixture
def users(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    """nurse.nina (community trust), social.sam (council), coord.cara (care coordinator), gp.gary, ward.wes,
    admin.ada: each an `As` caller sending their own real access token."""
    names = {"nina": "nurse.nina", "sam": "social.sam", "cara": "coord.cara", "gary": "gp.gary",
             "wes": "ward.wes", "ada": "admin.ada", "pat": "patient.pat"}
    return {short: As(client, auth_headers(user)) for short, user in names.items()}
