"""Fixtures: the demo record, and every demo identity as an API caller holding its own real access token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.support import As

PEOPLE = {"nina": "nurse.nina", "sam": "social.sam", "cara": "coord.cara", "gary": "gp.gary", "wes": "ward.wes",
          "iris": "ig.iris", "ada": "admin.ada", "pat": "patient.pat", "paula": "patient.paula",
          "carl": "carer.carl"}


@pytest.fixture
def who(demo, client, auth_headers) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Every demo identity as an `As` caller (plus `gp` for the partner system gp-system)."""
    out = {short: As(client, auth_headers(user)) for short, user in PEOPLE.items()}
    out["gp"] = As(client, auth_headers(client="gp-system"))
    return out


@pytest.fixture
def policy(demo):  # type: ignore[no-untyped-def]
    """The installed PolicyGuard; tests that change its settings restore them."""
    guard = demo.policy
    saved = guard.settings
    yield guard
    guard.settings = saved
