"""Configuration from the environment, read once and validated (fails fast on bad values)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"configuration error: {name} must be positive, got {value}")
    return value


def _bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"configuration error: {name} must be a boolean (1/0), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str
    base_url: str
    demo: bool
    max_body_bytes: int
    var_dir: Path
    keys_dir: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings() -> Settings:
    var_dir = Path(os.environ.get("SHAREDCARE_VAR_DIR", str(PROJECT_ROOT / "var")))
    default_db = f"sqlite:///{var_dir / 'sharedcare.db'}"
    url = os.environ.get("SHAREDCARE_DATABASE_URL") or default_db
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not (url.startswith("sqlite") or url.startswith("postgresql+psycopg://")):
        raise SystemExit(f"configuration error: SHAREDCARE_DATABASE_URL must be sqlite or postgresql, got {url!r}")
    base_url = os.environ.get("SHAREDCARE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SystemExit(f"configuration error: SHAREDCARE_BASE_URL must be an http(s) URL, got {base_url!r}")
    keys_dir = Path(os.environ.get("SHAREDCARE_KEYS_DIR", str(var_dir / "keys")))
    return Settings(
        database_url=url,
        base_url=base_url,
        demo=_bool("SHAREDCARE_DEMO"),
        max_body_bytes=_int("SHAREDCARE_MAX_BODY_BYTES", 16 * 1024 * 1024),
        var_dir=var_dir,
        keys_dir=keys_dir,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
