"""Shared helpers for the identity commands: the same configuration and services as the server."""

from __future__ import annotations

import sys
from typing import Any


def services() -> Any:
    from service.bootstrap import build_services
    from service.config import get_settings

    return build_services(get_settings())


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
