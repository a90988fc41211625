"""Configuration: one typed, frozen `Settings` (pydantic-settings) read from the environment (`SHAREDCARE_*`) once
and validated; a bad value stops the process (exit 3) with one line per bad variable, naming it.

Every setting of the service is a field here (a field `name` is the variable `SHAREDCARE_NAME` unless it names its
variable itself); modules take theirs from the object (`get_settings()`, or the one the bootstrap was given), never
from `os.environ`. An empty variable means its default. Lists are comma- (or space-) separated. A field added here
needs a line in the README's "Configuration" table.

`Settings(...)` takes keyword arguments (tests build variants with `settings.model_copy(update={...})`); it is
frozen. `load_settings()` turns a `ValidationError` into `SystemExit("configuration error: ...")`, which
`sharedcare` answers with exit code 3 (service/cli.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from annotated_types import Ge, Gt, Le, Lt
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "SHAREDCARE_"

AUTH_CLAIMS = {"fhir_user", "organisation", "ods_code", "role_code", "roles", "kind", "patient", "scope", "subject"}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
SECRET_MIN = 16  # characters of SHAREDCARE_SECRET / SHAREDCARE_AUDIT_KEY
# Lists whose empty value means "none" rather than the default (an empty SHAREDCARE_BREAK_GLASS_ROLES: nobody).
_EMPTY_MEANS_NONE = {"break_glass_roles", "restricted_labels", "secondary_use_clients"}
_SECRET = {"secret", "audit_key"}  # never echoed in an error

Positive = Annotated[int, Field(gt=0)]
Words = Annotated[frozenset[str], NoDecode]


def _seconds(default: float, low: float, high: float, alias: str | None = None) -> Any:
    return Field(default=default, ge=low, le=high, validation_alias=alias)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid", populate_by_name=True,
                                      validate_default=True, case_sensitive=False)

    # -- where things are -------------------------------------------------------------------------------------
    var_dir: Path = PROJECT_ROOT / "var"  # the SQLite file, generated keys, the audit spool and anchor
    database_url: str = ""  # default: sqlite:///<var_dir>/sharedcare.db
    database_replica_url: str | None = None  # a streaming replica for searches and export (service/replica.py)
    replica_max_lag_seconds: float = _seconds(2.0, 0.1, 3600.0)  # the replica is used only while at most this stale
    database_pooler: Literal["none", "transaction"] = "none"  # transaction: the URL is pgbouncer (service/pooler.py)
    keys_dir: Path = Path()  # default: <var_dir>/keys
    demo: bool = False
    allow_insecure_http: bool = False  # plain http public URL / subscription endpoints beyond loopback
    base_url: str = "http://127.0.0.1:8000"
    max_body_bytes: Positive = 16 * 1024 * 1024
    # worker threads per process running FHIR requests (service/api/fhir_http.py): enough to overlap the database
    # waits of one interpreter; more only contend for its lock
    request_threads: Annotated[int, Field(ge=1, le=64)] = 4
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    tracing: Literal["off", "otlp", "console"] = "off"  # OpenTelemetry (service/tracing; README "Tracing")
    # -- secrets (service/secrets.py, service/audit/seal.py): never in a repr or an error ------------------------
    secret: SecretStr | None = None  # the server secret itself
    secret_file: Path | None = None  # a file holding it
    audit_key: SecretStr | None = None  # the audit seal key itself
    audit_key_file: Path | None = None  # a file holding it (else <keys_dir>/audit-seal-key)
    # -- identity and access (service/auth); see the README's "Identity and access" ------------------------------
    access_token_ttl: Positive = 900
    refresh_token_ttl: Positive = 30 * 24 * 3600
    clock_skew: Annotated[int, Field(gt=0, le=300)] = 30
    login_rate_per_minute: Positive = 20
    api_rate_per_minute: Annotated[int, Field(ge=0)] = 6000  # per caller per minute, every process (0: no limit)
    token_rate_per_minute: Positive = 120
    login_max_failures: Positive = 5
    login_lockout_seconds: Positive = 900
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    external_issuer: str | None = None
    external_jwks_url: str | None = None
    external_audience: str | None = None  # default: the FHIR base
    external_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256", "ES256", "RS384", "ES384", "PS256")
    external_claims_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # -- the audit log (service/audit) ----------------------------------------------------------------------------
    audit_anchor: Path | None = None  # where seal heads are written outside the database (None: under var_dir)
    audit_seal_seconds: float = _seconds(2.0, 0.0, 3600.0)  # how often a server seals what is pending (0: never)
    revocation_seconds: float = _seconds(5.0, 0.0, 60.0, "SHAREDCARE_REVOCATION_CHECK_SECONDS")
    statement_timeout: float = _seconds(15.0, 0.0, 3600.0, "SHAREDCARE_STATEMENT_TIMEOUT_SECONDS")  # 0: no limit
    # -- bulk export (service/export); see the README's "Bulk export" --------------------------------------------
    export_ttl_seconds: Positive = 3600  # a finished export's files are served this long, then deleted
    export_lease_seconds: float = _seconds(60.0, 1.0, 3600.0)  # a job whose lease lapsed this long is re-run
    export_poll_seconds: float = _seconds(1.0, 0.05, 60.0)  # how often an idle export worker looks for jobs
    export_page_size: Positive = 500  # resources per search page while exporting (at most 1000)
    export_file_resources: Positive = 100_000  # a type's resources are split into files of at most this many
    export_worker: bool = True  # run the export worker thread in each serve process
    references_lenient: bool = False  # keep dangling local references (bulk loads)
    # -- the access policy (service/policy/config.py documents them) ---------------------------------------------
    care_team_access: Literal["member", "organisation"] = "member"
    break_glass_roles: Words = frozenset({"clinician"})
    break_glass_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 240
    break_glass_overrides_objections: bool = True
    restricted_labels: Words = frozenset({"V"})
    secondary_use_clients: Words = frozenset()
    # -- subscriptions (service/subscriptions/settings.py; the README's "Subscriptions") -------------------------
    subscription_worker: bool = True
    subscription_poll_seconds: float = _seconds(1.0, 0.01, 60.0)
    subscription_retry_seconds: float = _seconds(10.0, 0.01, 3600.0)
    subscription_max_retry_seconds: float = _seconds(3600.0, 0.01, 86400.0)
    subscription_max_attempts: Positive = 6
    subscription_timeout_seconds: float = _seconds(10.0, 0.1, 300.0)
    subscription_lease_seconds: float = _seconds(120.0, 1.0, 3600.0)

    # -- derived ------------------------------------------------------------------------------------------------
    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def anchor_path(self) -> Path:
        return self.audit_anchor or (self.var_dir / "audit-anchor.jsonl")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # -- validation ---------------------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Empty means the default (trimmed strings); the paths that default to places under the var directory."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for k, v in data.items():
            if isinstance(v, str):
                if k not in _SECRET:  # (a secret is kept as it is, but an empty one is unset too)
                    v = v.strip()
                if v.strip() == "" and k not in _EMPTY_MEANS_NONE:
                    continue
            out[k] = v
        var_dir = Path(out.get("var_dir") or PROJECT_ROOT / "var")
        out.setdefault("database_url", f"sqlite:///{var_dir / 'sharedcare.db'}")
        out.setdefault("keys_dir", var_dir / "keys")
        return out

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        if not url.startswith(("sqlite", "postgresql+psycopg://")):
            raise ValueError(f"must be sqlite or postgresql, got a {url.split(':', 1)[0]!r} URL")
        return url

    @field_validator("database_replica_url")
    @classmethod
    def _replica_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        try:
            pg = cls._database_url(url)
        except ValueError:
            pg = ""
        if not pg.startswith("postgresql"):
            raise ValueError("must be a postgresql:// URL (a streaming replica of SHAREDCARE_DATABASE_URL)")
        return pg

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {url!r}")
        return url

    @field_validator("log_level", "tracing", "database_pooler", mode="before")
    @classmethod
    def _log_level(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("secret", "audit_key")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < SECRET_MIN:
            raise ValueError(f"must be at least {SECRET_MIN} characters")
        return v

    @field_validator("export_page_size")
    @classmethod
    def _page_size(cls, v: int) -> int:
        return min(v, 1000)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: Any) -> Any:
        origins = [o.strip().rstrip("/") for o in _items(v, ",")]
        for o in origins:
            if o == "*" or not o.startswith(("https://", "http://")):
                raise ValueError(f"must list explicit http(s) origins, got {o!r}")
        return tuple(origins)

    @field_validator("external_algorithms", mode="before")
    @classmethod
    def _algorithms(cls, v: Any) -> Any:
        chosen = tuple(_items(v, ","))
        bad = [a for a in chosen if a not in ALGORITHMS]
        if bad or not chosen:
            raise ValueError(f"has unsupported values {bad}; allowed: {sorted(ALGORITHMS)} (symmetric and 'none' are "
                             "never accepted)")
        return chosen

    @field_validator("external_claims_map", mode="before")
    @classmethod
    def _claims_map(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError as exc:
                raise ValueError(f"is not JSON: {exc}") from None
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise ValueError("must be a JSON object of field -> claim path")
        unknown = set(v) - AUTH_CLAIMS
        if unknown:
            raise ValueError(f"has unknown fields {sorted(unknown)}; known: {sorted(AUTH_CLAIMS)}")
        return v

    @field_validator("break_glass_roles", "restricted_labels", "secondary_use_clients", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        return frozenset(_items(v, " "))

    @field_validator("external_jwks_url")
    @classmethod
    def _jwks_url(cls, v: str | None) -> str | None:
        if v and urlsplit(v).scheme != "https" and (urlsplit(v).hostname or "") not in LOOPBACK:
            raise ValueError(f"must be https, got {v!r}")
        return v

    @model_validator(mode="after")
    def _together(self) -> Settings:
        if bool(self.external_issuer) != bool(self.external_jwks_url):
            raise ValueError("SHAREDCARE_EXTERNAL_ISSUER and SHAREDCARE_EXTERNAL_JWKS_URL must be set together")
        if self.database_replica_url and not self.database_url.startswith("postgresql"):
            raise ValueError("SHAREDCARE_DATABASE_REPLICA_URL needs SHAREDCARE_DATABASE_URL on PostgreSQL (the replica "
                             "streams from it)")
        # Tokens and passwords cross the wire: outside demo mode the public URL must be https (TLS may end at a
        # proxy in front of the service) unless it is a loopback address.
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK and not self.demo \
                and not self.allow_insecure_http:
            raise ValueError(f"SHAREDCARE_BASE_URL must be https:// outside demo mode (got {self.base_url!r}); put the "
                             "service behind TLS, or set SHAREDCARE_ALLOW_INSECURE_HTTP=1 for a closed test network")
        return self


def _items(v: Any, sep: str) -> list[str]:
    """A comma- or space-separated string, or any iterable of strings, as a list of non-empty items."""
    if isinstance(v, str):
        v = v.replace(",", " ").split() if sep == " " else v.split(sep)
    return [str(x).strip() for x in (v or ()) if str(x).strip()]


def variable(field: str) -> str:
    """The environment variable that sets a field."""
    f = Settings.model_fields.get(field)
    alias = f.validation_alias if f is not None else None
    return alias if isinstance(alias, str) else PREFIX + field.upper()


def _bounds(field: str) -> str | None:
    f = Settings.model_fields.get(field)
    if f is None:
        return None
    lo = hi = None
    for m in f.metadata:
        if isinstance(m, (Ge, Gt)):
            lo = m
        elif isinstance(m, (Le, Lt)):
            hi = m
    if isinstance(lo, Gt) and lo.gt == 0 and hi is None:
        return "must be positive"
    lo_v = getattr(lo, "ge", getattr(lo, "gt", None))
    hi_v = getattr(hi, "le", getattr(hi, "lt", None))
    if lo_v is not None and hi_v is not None:
        return f"must be between {lo_v:g} and {hi_v:g}" if isinstance(lo, Ge) else \
            f"must be more than {lo_v:g} and at most {hi_v:g}"
    if lo_v is not None:
        return f"must be at least {lo_v:g}"
    return None


KINDS = {"int_parsing": "must be an integer", "int_from_float": "must be an integer", "int_type": "must be an integer",
         "float_parsing": "must be a number", "float_type": "must be a number",
         "bool_parsing": "must be a boolean (1/0)", "bool_type": "must be a boolean (1/0)"}


def describe(exc: ValidationError) -> list[str]:
    """One line per bad variable, naming it (never pydantic's own report)."""
    lines: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        loc = [str(x) for x in err.get("loc", ())]
        kind = err.get("type", "")
        raw = err.get("input")
        if not loc:  # a rule over several variables: its message names them
            message = str(err.get("ctx", {}).get("error", err.get("msg", ""))).removeprefix("Value error, ")
            lines.setdefault(message, f"configuration error: {message}")
            continue
        field = loc[0].removeprefix(PREFIX).lower() if loc[0].upper().startswith(PREFIX) else loc[0]
        name = loc[0].upper() if loc[0].upper().startswith(PREFIX) else variable(field)
        if kind == "value_error":
            text = str(err.get("ctx", {}).get("error", err.get("msg", "")))
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            text = _bounds(field) or err.get("msg", "").replace("Input should be", "must be")
        elif kind in KINDS:
            text = KINDS[kind]
        elif kind == "extra_forbidden":
            text = "is not a setting"
        else:
            text = err.get("msg", "").replace("Input should be", "must be")
        if kind != "value_error" and field not in _SECRET and isinstance(raw, (str, int, float)):
            text += f", got {raw!r}"
        lines.setdefault(name, f"configuration error: {name} {text}")
    return list(lines.values())


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and `overrides`, by field name); a bad value is a SystemExit naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit("\n".join(describe(exc))) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
