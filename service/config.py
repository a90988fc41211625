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
    # Identity and access (service/auth); see the README's "Identity and access".
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    clock_skew: int = 30
    login_rate_per_minute: int = 20
    api_rate_per_minute: int = 6000  # FHIR requests per caller per minute, across every process (0: no limit)
    token_rate_per_minute: int = 120
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    cors_origins: tuple[str, ...] = ()
    external_issuer: str | None = None
    external_jwks_url: str | None = None
    external_audience: str | None = None  # default: the FHIR base
    external_algorithms: tuple[str, ...] = ("RS256", "ES256", "RS384", "ES384", "PS256")
    external_claims_map: dict[str, str] = field(default_factory=dict)
    audit_anchor: Path | None = None  # where seal heads are written outside the database (None: under var_dir)
    audit_seal_seconds: float = 2.0  # how often a server seals what is pending (0: never by itself)
    revocation_seconds: float = 5.0  # a revoked token is refused within this many seconds by every process
    statement_timeout: float = 15.0  # seconds any one database statement may run (0: no limit)
    # Bulk export (service/export); see the README's "Bulk export".
    export_ttl_seconds: int = 3600  # a finished export's files are served this long, then deleted
    export_lease_seconds: float = 60.0  # a running job whose worker has not renewed its lease this long is re-run
    export_poll_seconds: float = 1.0  # how often an idle export worker looks for queued jobs
    export_page_size: int = 500  # resources per search page while exporting (rows are streamed, never all loaded)
    export_file_resources: int = 100_000  # a type's resources are split into files of at most this many
    export_worker: bool = True  # run the export worker thread in each serve process
    references_lenient: bool = False  # SHAREDCARE_REFERENCES_LENIENT=1: keep dangling local references (bulk loads)

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def anchor_path(self) -> Path:
        return self.audit_anchor or (self.var_dir / "audit-anchor.jsonl")

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
    if not url.startswith(("sqlite", "postgresql+psycopg://")):
        raise SystemExit(f"configuration error: SHAREDCARE_DATABASE_URL must be sqlite or postgresql, got {url!r}")
    base_url = os.environ.get("SHAREDCARE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SystemExit(f"configuration error: SHAREDCARE_BASE_URL must be an http(s) URL, got {base_url!r}")
    keys_dir = Path(os.environ.get("SHAREDCARE_KEYS_DIR", str(var_dir / "keys")))
    demo = _bool("SHAREDCARE_DEMO")
    _check_transport(base_url, demo)
    return Settings(
        database_url=url,
        base_url=base_url,
        demo=demo,
        max_body_bytes=_int("SHAREDCARE_MAX_BODY_BYTES", 16 * 1024 * 1024),
        var_dir=var_dir,
        keys_dir=keys_dir,
        audit_anchor=Path(os.environ["SHAREDCARE_AUDIT_ANCHOR"]) if os.environ.get("SHAREDCARE_AUDIT_ANCHOR")
        else None,
        audit_seal_seconds=_float("SHAREDCARE_AUDIT_SEAL_SECONDS", 2.0, 0.0, 3600.0),
        revocation_seconds=_float("SHAREDCARE_REVOCATION_CHECK_SECONDS", 5.0, 0.0, 60.0),
        statement_timeout=_float("SHAREDCARE_STATEMENT_TIMEOUT_SECONDS", 15.0, 0.0, 3600.0),
        export_ttl_seconds=_int("SHAREDCARE_EXPORT_TTL_SECONDS", 3600),
        export_lease_seconds=_float("SHAREDCARE_EXPORT_LEASE_SECONDS", 60.0, 1.0, 3600.0),
        export_poll_seconds=_float("SHAREDCARE_EXPORT_POLL_SECONDS", 1.0, 0.05, 60.0),
        export_page_size=min(_int("SHAREDCARE_EXPORT_PAGE_SIZE", 500), 1000),
        export_file_resources=_int("SHAREDCARE_EXPORT_FILE_RESOURCES", 100_000),
        export_worker=_bool("SHAREDCARE_EXPORT_WORKER", True),
        references_lenient=_bool("SHAREDCARE_REFERENCES_LENIENT"),
        **_auth_settings(),
    )


def _float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name} must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise SystemExit(f"configuration error: {name} must be between {low:g} and {high:g} seconds, got {raw!r}")
    return value


AUTH_CLAIMS = {"fhir_user", "organisation", "ods_code", "role_code", "roles", "kind", "patient", "scope", "subject"}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _check_transport(base_url: str, demo: bool) -> None:
    """Tokens and passwords cross the wire: outside demo mode the public URL must be https (TLS may end at a
    proxy in front of the service) unless it is a loopback address."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK and not demo \
            and not _bool("SHAREDCARE_ALLOW_INSECURE_HTTP"):
        raise SystemExit("configuration error: SHAREDCARE_BASE_URL must be https:// outside demo mode "
                         f"(got {base_url!r}); put the service behind TLS, or set SHAREDCARE_ALLOW_INSECURE_HTTP=1 "
                         "for a closed test network")


def _auth_settings() -> dict[str, object]:
    import json
    from urllib.parse import urlsplit

    out: dict[str, object] = {
        "access_token_ttl": _int("SHAREDCARE_ACCESS_TOKEN_TTL", 900),
        "refresh_token_ttl": _int("SHAREDCARE_REFRESH_TOKEN_TTL", 30 * 24 * 3600),
        "clock_skew": _int("SHAREDCARE_CLOCK_SKEW", 30),
        "login_rate_per_minute": _int("SHAREDCARE_LOGIN_RATE_PER_MINUTE", 20),
        "api_rate_per_minute": _int("SHAREDCARE_API_RATE_PER_MINUTE", 6000),
        "token_rate_per_minute": _int("SHAREDCARE_TOKEN_RATE_PER_MINUTE", 120),
        "login_max_failures": _int("SHAREDCARE_LOGIN_MAX_FAILURES", 5),
        "login_lockout_seconds": _int("SHAREDCARE_LOGIN_LOCKOUT_SECONDS", 900),
    }
    if out["clock_skew"] > 300:  # type: ignore[operator]
        raise SystemExit("configuration error: SHAREDCARE_CLOCK_SKEW must be at most 300 seconds")
    origins = [o.strip().rstrip("/") for o in os.environ.get("SHAREDCARE_CORS_ORIGINS", "").split(",") if o.strip()]
    for o in origins:
        if o == "*" or not o.startswith(("https://", "http://")):
            raise SystemExit(f"configuration error: SHAREDCARE_CORS_ORIGINS must list explicit http(s) origins, "
                             f"got {o!r}")
    out["cors_origins"] = tuple(origins)
    issuer = os.environ.get("SHAREDCARE_EXTERNAL_ISSUER", "").strip() or None
    jwks_url = os.environ.get("SHAREDCARE_EXTERNAL_JWKS_URL", "").strip() or None
    if bool(issuer) != bool(jwks_url):
        raise SystemExit("configuration error: SHAREDCARE_EXTERNAL_ISSUER and SHAREDCARE_EXTERNAL_JWKS_URL "
                         "must be set together")
    if jwks_url:
        parts = urlsplit(jwks_url)
        if parts.scheme != "https" and (parts.hostname or "") not in LOOPBACK:
            raise SystemExit(f"configuration error: SHAREDCARE_EXTERNAL_JWKS_URL must be https, got {jwks_url!r}")
    out["external_issuer"] = issuer
    out["external_jwks_url"] = jwks_url
    out["external_audience"] = os.environ.get("SHAREDCARE_EXTERNAL_AUDIENCE", "").strip() or None
    algs = os.environ.get("SHAREDCARE_EXTERNAL_ALGORITHMS", "").strip()
    if algs:
        chosen = tuple(a.strip() for a in algs.split(",") if a.strip())
        allowed = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
        bad = [a for a in chosen if a not in allowed]
        if bad or not chosen:
            raise SystemExit(f"configuration error: SHAREDCARE_EXTERNAL_ALGORITHMS has unsupported values {bad}; "
                             f"allowed: {sorted(allowed)} (symmetric and 'none' are never accepted)")
        out["external_algorithms"] = chosen
    raw_map = os.environ.get("SHAREDCARE_EXTERNAL_CLAIMS_MAP", "").strip()
    if raw_map:
        try:
            cmap = json.loads(raw_map)
        except ValueError as exc:
            raise SystemExit(f"configuration error: SHAREDCARE_EXTERNAL_CLAIMS_MAP is not JSON: {exc}") from None
        if not isinstance(cmap, dict) or not all(isinstance(v, str) for v in cmap.values()):
            raise SystemExit("configuration error: SHAREDCARE_EXTERNAL_CLAIMS_MAP must be a JSON object of "
                             "field -> claim path")
        unknown = set(cmap) - AUTH_CLAIMS
        if unknown:
            raise SystemExit(f"configuration error: SHAREDCARE_EXTERNAL_CLAIMS_MAP has unknown fields "
                             f"{sorted(unknown)}; known: {sorted(AUTH_CLAIMS)}")
        out["external_claims_map"] = cmap
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
