"""The operator CLI, run as real subprocesses on a database of their own (migrated with `sharedcare db upgrade`):
`sharedcare user add|list|passwd|disable`, `sharedcare client add|list` (a public key or a JWKS), and
`sharedcare token --user NAME [--scope S] [--patient ID]` / `--client ID [--scope S]`, which print the token alone
on stdout; the printed token then works against the API (an application built on the same database and keys).
Also: no default credentials outside demo mode. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, RSAKey

from tests.auth.conftest import DEMO_PASSWORD, assertion, authorize_params, backend_form, bearer, login, pkce

SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")
BASE = "http://127.0.0.1:8000"
TOKEN_URL = BASE + "/auth/token"
PASSWORD = "correct horse battery staple"


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, stdin: str | None = None, demo: bool = False) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if demo:
            env["SHAREDCARE_DEMO"] = "1"
        return subprocess.run([SHAREDCARE, *args], input=stdin, env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    def ok(self, *args: str, stdin: str | None = None, demo: bool = False) -> str:
        out = self(*args, stdin=stdin, demo=demo)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout


@pytest.fixture
def cli_db(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of the CLI's own (not the fixtures' shared one)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from tests.conftest import PG_ADMIN_URL

    admin = create_engine(PG_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    name = f"sc_cli_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bytecode cache shared by the CLI subprocesses of this run (each would otherwise compile every module
    when PYTHONDONTWRITEBYTECODE is set), kept out of the repository and the virtualenv."""
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def cli(cli_db: str, tmp_path: Path, pycache: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(SHAREDCARE_DATABASE_URL=cli_db, SHAREDCARE_VAR_DIR=str(tmp_path / "var"),
               SHAREDCARE_KEYS_DIR=str(tmp_path / "keys"), SHAREDCARE_BASE_URL=BASE)
    c = Cli(env)
    c.ok("db", "upgrade")
    c.ok("keys", "generate")  # (outside demo mode keys are made only by this command)
    return c


@pytest.fixture
def api(cli: Cli, settings: Any, tmp_path: Path) -> Iterator[Any]:
    """An application on the CLI's database and keys, as the server started with the same configuration."""
    from service.api.app import create_app
    from service.bootstrap import build_services

    made: list[Any] = []

    def make(demo: bool = False) -> TestClient:
        s = settings.model_copy(update={
            "database_url": cli.env["SHAREDCARE_DATABASE_URL"], "base_url": BASE,
            "keys_dir": Path(cli.env["SHAREDCARE_KEYS_DIR"]), "var_dir": Path(cli.env["SHAREDCARE_VAR_DIR"]),
            "demo": demo})
        svc = build_services(s)
        http = TestClient(create_app(s, services=svc), base_url=BASE)
        http.__enter__()
        made.append((svc, http))
        return http

    yield make
    for svc, http in made:
        http.__exit__(None, None, None)
        svc.db.dispose()


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _only_token(stdout: str) -> str:
    lines = stdout.splitlines()
    assert len(lines) == 1 and stdout.endswith("\n"), stdout
    token = lines[0]
    assert token.count(".") == 2 and " " not in token
    return token


def _add_admin(cli: Cli, name: str = "ops.admin") -> None:
    cli.ok("user", "add", name, "--kind", "admin", "--name", "Ops Admin", "--fhir-user", "Practitioner/ops",
           "--password-stdin", stdin=PASSWORD + "\n")


# -- users ------------------------------------------------------------------------------------------------------
def test_a_fresh_database_has_no_users_or_clients(cli):
    assert cli.ok("user", "list") == ""
    assert cli.ok("client", "list") == ""


def test_user_add_and_list(cli):
    out = cli("user", "add", "nurse.test", "--kind", "practitioner", "--name", "Test Nurse", "--fhir-user",
              "Practitioner/p-test", "--practitioner-role", "PractitionerRole/r-test", "--organisation",
              "Organization/org-test", "--ods", "RYX", "--role-code", "R8001", "--password-stdin",
              stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and "nurse.test saved" in out.stderr
    assert PASSWORD not in out.stderr
    row = cli.ok("user", "list").strip().split("\t")
    assert row == ["nurse.test", "practitioner", "Practitioner/p-test", "Organization/org-test", "RYX", "R8001",
                   "clinician", "active"]


@pytest.mark.parametrize("args,stdin,words", [
    (["--kind", "practitioner"], PASSWORD, "--fhir-user"),
    (["--kind", "patient"], PASSWORD, "--patient"),
    (["--kind", "admin"], "short\n", "8 characters"),
    (["--kind", "admin", "--scope", "user/Nonsense.rs"], PASSWORD, "Nonsense"),
])
def test_user_add_refuses_incomplete_users(cli, args, stdin, words):
    out = cli("user", "add", "someone", *args, "--password-stdin", stdin=stdin)
    assert out.returncode != 0 and out.stdout == "" and words in out.stderr
    assert cli.ok("user", "list") == ""


def test_a_users_password_is_stored_hashed_with_argon2(cli, cli_db):
    from sqlalchemy import create_engine, select

    from service.auth.tables import auth_user

    _add_admin(cli)
    engine = create_engine(cli_db)
    with engine.connect() as conn:
        stored = conn.execute(select(auth_user.c.password_hash)).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


# -- tokens for users -------------------------------------------------------------------------------------------
def test_token_for_a_user_prints_only_the_token_and_it_works(cli, api):
    _add_admin(cli)
    token = _only_token(cli.ok("token", "--user", "ops.admin"))
    c = _claims(token)
    assert c["sub"] == "ops.admin" and c["aud"] == BASE + "/fhir" and c["iss"] == BASE
    assert set(c["scope"].split()) == {"system/*.cruds", "user/*.cruds"}  # everything it may have (no patient/)
    http = api()
    created = http.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Cli"}]},
                        headers=bearer(token))
    assert created.status_code == 201, created.text
    assert http.get(f"/fhir/Patient/{created.json()['id']}", headers=bearer(token)).status_code == 200
    assert http.get("/fhir/Patient").status_code == 401  # and nothing works without it


def test_token_with_a_scope_and_with_a_patient(cli, api):
    _add_admin(cli)
    http = api()
    admin = bearer(_only_token(cli.ok("token", "--user", "ops.admin")))
    pid = http.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "One"}]},
                    headers=admin).json()["id"]
    other = http.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Two"}]},
                      headers=admin).json()["id"]
    narrow = _only_token(cli.ok("token", "--user", "ops.admin", "--scope", "user/Patient.rs"))
    assert _claims(narrow)["scope"] == "user/Patient.rs"
    h = bearer(narrow)
    assert http.get(f"/fhir/Patient/{pid}", headers=h).status_code == 200
    assert http.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=h).status_code == 403
    in_context = _only_token(cli.ok("token", "--user", "ops.admin", "--patient", pid))
    c = _claims(in_context)
    assert c["patient"] == pid and all(s.startswith("patient/") for s in c["scope"].split() if "/" in s
                                       and not s.startswith("launch"))
    h = bearer(in_context)
    assert http.get(f"/fhir/Patient/{pid}", headers=h).status_code == 200
    assert http.get(f"/fhir/Patient/{other}", headers=h).status_code in (403, 404)


@pytest.mark.parametrize("args,words", [
    (["--user", "nobody"], "no active user"),
    (["--user", "ops.admin", "--patient", "no-such-patient"], "no Patient"),
    (["--user", "ops.admin", "--scope", "user/Nonsense.rs"], "Nonsense"),
    (["--user", "ops.admin", "--scope", "launch/patient"], "none of the requested scopes"),
    (["--client", "nobody"], "no active client"),
    (["--client", "x", "--patient", "p"], "--patient"),
    (["--user", "ops.admin", "--ttl", "999999"], "--ttl"),
])
def test_token_errors_go_to_stderr_with_nothing_on_stdout(cli, args, words):
    _add_admin(cli)
    out = cli("token", *args)
    assert out.returncode != 0 and out.stdout == "", out.stdout
    assert words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_patient_user_token_is_confined_to_their_own_record(cli, api):
    _add_admin(cli)
    http = api()
    admin = bearer(_only_token(cli.ok("token", "--user", "ops.admin")))
    mine = http.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Mine"}]},
                     headers=admin).json()["id"]
    theirs = http.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Theirs"}]},
                       headers=admin).json()["id"]
    cli.ok("user", "add", "pat.cli", "--kind", "patient", "--patient", mine, "--password-stdin", stdin=PASSWORD)
    assert cli("token", "--user", "pat.cli", "--patient", theirs).returncode != 0
    token = _only_token(cli.ok("token", "--user", "pat.cli"))
    assert _claims(token)["patient"] == mine and _claims(token)["fhirUser"] == f"Patient/{mine}"
    assert http.get(f"/fhir/Patient/{mine}", headers=bearer(token)).status_code == 200
    assert http.get(f"/fhir/Patient/{theirs}", headers=bearer(token)).status_code in (403, 404)


# -- clients -------------------------------------------------------------------------------------------------------
def test_client_add_with_a_public_key_then_backend_services(cli, api, tmp_path):
    key = ECKey.generate_key("P-384", {"kid": "cli-ec-1"}, private=True)
    pem = tmp_path / "partner.pub.pem"
    pem.write_bytes(key.as_pem(private=False))
    out = cli("client", "add", "partner-ec", "--name", "Partner EC", "--public-key", str(pem), "--kid", "cli-ec-1",
              "--alg", "ES384", "--scope", "system/Patient.rs", "--organisation", "Organization/org-x",
              "--ods", "X123")
    assert out.returncode == 0 and out.stdout == "", out.stderr
    listed = cli.ok("client", "list").strip().split("\t")
    assert listed == ["partner-ec", "private_key_jwt", "client_credentials", "Organization/org-x",
                      "system/Patient.rs"]
    http = api()
    r = http.post("/auth/token", data=backend_form("partner-ec", assertion("partner-ec", key, "ES384",
                                                                           aud=TOKEN_URL), "system/Patient.rs"))
    assert r.status_code == 200, r.text
    c = _claims(r.json()["access_token"])
    assert c["sub"] == "partner-ec" and c["ods_code"] == "X123" and c["organization"] == "Organization/org-x"
    assert http.get("/fhir/Patient", headers=bearer(r.json()["access_token"])).status_code == 200
    # `sharedcare token --client` gives the same kind of token directly.
    direct = _only_token(cli.ok("token", "--client", "partner-ec"))
    assert _claims(direct)["scope"] == "system/Patient.rs" and _claims(direct)["sub"] == "partner-ec"
    assert http.get("/fhir/Patient", headers=bearer(direct)).status_code == 200
    assert http.get("/fhir/Observation", headers=bearer(direct)).status_code == 403


def test_client_add_with_a_jwks_file_rs384(cli, api, tmp_path):
    key = RSAKey.generate_key(2048, {"kid": "cli-rsa-1"}, private=True)
    pub = key.as_dict(private=False)
    pub.update({"kid": "cli-rsa-1", "alg": "RS384", "use": "sig"})
    jwks = tmp_path / "partner.jwks.json"
    jwks.write_text(json.dumps({"keys": [pub]}))
    cli.ok("client", "add", "partner-rsa", "--name", "Partner RSA", "--jwks", str(jwks))
    http = api()
    r = http.post("/auth/token", data=backend_form("partner-rsa", assertion("partner-rsa", key, "RS384",
                                                                            aud=TOKEN_URL)))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/*.rs"


def test_client_add_refuses_private_keys_and_incomplete_registrations(cli, tmp_path):
    key = ECKey.generate_key("P-384", {"kid": "k"}, private=True)
    private_pem = tmp_path / "private.pem"
    private_pem.write_bytes(key.as_pem(private=True))
    out = cli("client", "add", "bad", "--name", "Bad", "--public-key", str(private_pem), "--kid", "k",
              "--alg", "ES384")
    assert out.returncode != 0 and "private key" in out.stderr
    private_jwks = tmp_path / "private.jwks.json"
    private_jwks.write_text(json.dumps({"keys": [{**key.as_dict(private=True), "kid": "k"}]}))
    out = cli("client", "add", "bad", "--name", "Bad", "--jwks", str(private_jwks))
    assert out.returncode != 0 and "private key" in out.stderr
    out = cli("client", "add", "bad", "--name", "Bad", "--public-key", str(private_pem))
    assert out.returncode != 0 and "--kid" in out.stderr
    out = cli("client", "add", "app", "--name", "App", "--public")
    assert out.returncode != 0 and "--redirect-uri" in out.stderr
    assert cli.ok("client", "list") == ""


def test_a_public_app_registered_by_the_cli_signs_users_in(cli, api):
    cli.ok("client", "add", "my-app", "--name", "My App", "--public", "--redirect-uri",
           "http://127.0.0.1:8765/callback")
    _add_admin(cli)
    http = api()
    verifier, challenge = pkce()
    params = authorize_params(challenge, client_id="my-app", aud=BASE + "/fhir", scope="openid fhirUser user/*.rs")
    r = login(http, params, "ops.admin", PASSWORD)
    assert r.status_code == 302, r.text
    code = r.headers["location"].split("code=", 1)[1].split("&", 1)[0]
    tok = http.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "client_id": "my-app",
                                         "redirect_uri": "http://127.0.0.1:8765/callback", "code_verifier": verifier})
    assert tok.status_code == 200, tok.text
    assert http.get("/fhir/Patient", headers=bearer(tok.json()["access_token"])).status_code == 200


# -- no default credentials outside demo mode --------------------------------------------------------------------
def test_demo_passwords_work_only_in_demo_mode(cli, api):
    cli.ok("demo", "load", demo=True)
    _verifier, challenge = pkce()
    params = authorize_params(challenge, aud=BASE + "/fhir")
    production = api(demo=False)
    r = login(production, params, "patient.pat", DEMO_PASSWORD)
    assert r.status_code == 401 and "location" not in r.headers
    assert login(production, params, "admin.ada", DEMO_PASSWORD).status_code == 401
    demo_mode = api(demo=True)
    assert login(demo_mode, params, "patient.pat", DEMO_PASSWORD).status_code == 302
    # An operator who sets a real password takes the account out of the demo: it then works in production.
    cli.ok("user", "passwd", "admin.ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert login(production, params, "admin.ada", PASSWORD, patient="pat-pat").status_code == 302
    assert login(production, params, "admin.ada", DEMO_PASSWORD, patient="pat-pat").status_code == 401


def test_demo_load_is_idempotent_and_keeps_changed_passwords(cli, api):
    cli.ok("demo", "load", demo=True)
    cli.ok("user", "passwd", "nurse.nina", "--password-stdin", stdin=PASSWORD + "\n")
    cli.ok("user", "disable", "ward.wes")
    cli.ok("demo", "load", demo=True)
    assert "disabled" in next(line for line in cli.ok("user", "list").splitlines() if line.startswith("ward.wes"))
    users = [line.split("\t")[0] for line in cli.ok("user", "list").splitlines()]
    assert sorted(users) == sorted(["nurse.nina", "social.sam", "coord.cara", "gp.gary", "ward.wes", "ig.iris",
                                    "admin.ada", "patient.pat", "patient.paula", "carer.carl"])
    assert sorted(line.split("\t")[0] for line in cli.ok("client", "list").splitlines()) == ["demo-app",
                                                                                             "gp-system"]
    _verifier, challenge = pkce()
    params = authorize_params(challenge, aud=BASE + "/fhir")
    http = api(demo=False)
    assert login(http, params, "nurse.nina", PASSWORD, patient="pat-pat").status_code == 302


def test_a_disabled_user_gets_no_token_and_cannot_sign_in(cli, api):
    _add_admin(cli)
    cli.ok("client", "add", "demo-app", "--name", "App", "--public", "--redirect-uri", "http://127.0.0.1:8765/callback")
    _verifier, challenge = pkce()
    params = authorize_params(challenge, aud=BASE + "/fhir", scope="user/*.rs")
    http = api()
    assert login(http, params, "ops.admin", PASSWORD).status_code == 302
    cli.ok("user", "disable", "ops.admin")
    assert "disabled" in cli.ok("user", "list")
    out = cli("token", "--user", "ops.admin")
    assert out.returncode != 0 and out.stdout == ""
    assert login(http, params, "ops.admin", PASSWORD).status_code == 401
    assert cli("user", "disable", "nobody").returncode != 0
