"""Helpers for the operations tests: a server's environment from the test settings, NHS numbers, log lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def server_env(settings: Any, **extra: str) -> dict[str, str]:
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": settings.base_url,
           "SHAREDCARE_DEMO": "1", "SHAREDCARE_VAR_DIR": str(settings.var_dir),
           "SHAREDCARE_KEYS_DIR": str(settings.keys_dir), "SHAREDCARE_AUDIT_SEAL_SECONDS": "0",
           "SHAREDCARE_API_RATE_PER_MINUTE": "100000"}
    env.update(extra)
    return env


def nhs_number(first9: str) -> str:
    """A valid NHS number (modulus 11) from nine digits."""
    total = sum(int(d) * (10 - i) for i, d in enumerate(first9))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    if check == 10:
        raise ValueError("no valid NHS number starts with these digits")
    return first9 + str(check)


def log_lines(home: Path) -> list[dict[str, Any]]:
    """The JSON lines a running_server wrote (every line must be JSON)."""
    out = []
    for path in sorted(home.glob("server-*.log")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out
