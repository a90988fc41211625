"""Markers for the FHIR API tests; helpers are in tests/api/support.py."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: imports a large data set (runs in the normal suite; deselect "
                                       "with -m 'not slow' for a quick loop)")
