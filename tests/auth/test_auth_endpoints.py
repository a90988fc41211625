"""The authorisation server's other endpoints: RFC 7009 revocation, RFC 7662 introspection, the discovery
documents (SMART configuration at the root and under /fhir, OpenID configuration, the JWKS, the oauth-uris
extension in /fhir/metadata), signing-key rotation, and the purge of expired identity rows.
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select

from tests.auth.conftest import assertion, backend_form, bearer, code_flow, gp_key, new_ec, register_backend

SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")
SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"
SMART_CAPABILITIES = ("permission-v2", "permission-v1", "launch-standalone", "client-public",
                      "client-confidential-asymmetric", "context-standalone-patient", "sso-openid-connect")


def _introspect(http: Any, token: str, client_id: str = "demo-app", **form: str) -> Any:
    return http.post("/auth/introspect", data={"token": token, "client_id": client_id, **form})


def _backend_token(http: Any, client_id: str = "gp-system", key: Any = None) -> str:
    r = http.post("/auth/token", data=backend_form(client_id, assertion(client_id, key or gp_key())))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# -- introspection -------------------------------------------------------------------------------------------
def test_introspection_of_access_and_refresh_tokens(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    r = _introspect(anon_client, tok["access_token"])
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    info = r.json()
    assert info["active"] is True and info["token_type"] == "Bearer"
    assert info["sub"] == "patient.pat" and info["client_id"] == "demo-app" and info["patient"] == "pat-pat"
    assert info["fhirUser"] == "Patient/pat-pat" and info["iss"] == "http://testserver"
    assert info["aud"] == "http://testserver/fhir" and info["exp"] > time.time()
    assert set(info["scope"].split()) == set(tok["scope"].split())
    ref = _introspect(anon_client, tok["refresh_token"], token_type_hint="refresh_token").json()
    assert ref["active"] is True and ref["token_type"] == "refresh_token" and ref["patient"] == "pat-pat"


def test_introspection_says_inactive_for_revoked_expired_unknown_and_foreign_tokens(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    assert anon_client.post("/auth/revoke", data={"token": tok["access_token"], "client_id": "demo-app"}
                            ).status_code == 200
    assert _introspect(anon_client, tok["access_token"]).json() == {"active": False}
    assert _introspect(anon_client, "garbage").json() == {"active": False}
    # A token signed by us but expired.
    tokens = demo.auth.tokens
    past = int(time.time()) - 3600
    old = tokens.sign({"iss": "http://testserver", "aud": "http://testserver/fhir", "sub": "patient.pat",
                       "iat": past - 60, "exp": past, "jti": "old-1", "client_id": "demo-app",
                       "scope": "patient/*.rs"}, "at+jwt")
    assert _introspect(anon_client, old).json() == {"active": False}
    # Another client (without the introspection right) learns nothing about demo-app's token.
    other = code_flow(anon_client, "patient.paula", scope=SCOPE)
    key = new_ec()
    register_backend(demo, "partner", key, "ES384")
    r = anon_client.post("/auth/introspect", data={"token": other["access_token"], **_assertion_auth("partner", key)})
    assert r.status_code == 200 and r.json() == {"active": False}


def _assertion_auth(client_id: str, key: Any) -> dict[str, str]:
    form = backend_form(client_id, assertion(client_id, key))
    return {k: v for k, v in form.items() if k.startswith("client_assertion")}


def test_a_resource_server_with_the_introspection_right_sees_every_token(demo, anon_client):
    from service.auth.identities import Client, upsert_client

    key = new_ec("rs-1")
    pub = key.as_dict(private=False)
    pub.update({"kid": "rs-1", "alg": "ES384"})
    with demo.db.write() as conn:
        upsert_client(conn, Client(client_id="resource-server", name="RS", auth_method="private_key_jwt",
                                   grant_types=("client_credentials",), redirect_uris=(), scope="system/Patient.rs",
                                   jwks={"keys": [pub]}, can_introspect=True))
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    r = anon_client.post("/auth/introspect", data={"token": tok["access_token"],
                                                   **_assertion_auth("resource-server", key)})
    assert r.json()["active"] is True and r.json()["sub"] == "patient.pat"
    gp = _backend_token(anon_client)
    info = anon_client.post("/auth/introspect", data={"token": gp, **_assertion_auth("resource-server", key)}).json()
    assert info["active"] is True and info["sub"] == "gp-system" and info["ods_code"] == "A81001"


def test_introspection_needs_client_authentication(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    r = anon_client.post("/auth/introspect", data={"token": tok["access_token"]})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    r = anon_client.post("/auth/introspect", data={"client_id": "demo-app"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    # A replayed assertion does not authenticate here either.
    signed = assertion("gp-system", gp_key())
    form = {"token": tok["access_token"], "client_assertion_type": backend_form("x", "y")["client_assertion_type"],
            "client_assertion": signed}
    assert anon_client.post("/auth/introspect", data=form).status_code == 200
    assert anon_client.post("/auth/introspect", data=form).json()["error"] == "invalid_client"


# -- revocation ------------------------------------------------------------------------------------------------
def test_a_backend_client_revokes_its_own_access_token(demo, anon_client):
    token = _backend_token(anon_client)
    assert anon_client.get("/fhir/Patient/pat-pat", headers=bearer(token)).status_code == 200
    r = anon_client.post("/auth/revoke", data={"token": token, "token_type_hint": "access_token",
                                               **_assertion_auth("gp-system", gp_key())})
    assert r.status_code == 200
    r = anon_client.get("/fhir/Patient/pat-pat", headers=bearer(token))
    assert r.status_code == 401 and "revoked" in r.headers["www-authenticate"]


def test_a_client_cannot_revoke_another_clients_token(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    r = anon_client.post("/auth/revoke", data={"token": tok["access_token"], **_assertion_auth("gp-system", gp_key())})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert anon_client.get("/fhir/Patient/pat-pat", headers=bearer(tok["access_token"])).status_code == 200
    r = anon_client.post("/auth/revoke", data={"token": tok["access_token"]})  # no client at all
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    assert anon_client.post("/auth/revoke", data={"token": "x", "client_id": "demo-app",
                                                  "token_type_hint": "id_token"}).json()["error"] == \
        "unsupported_token_type"


# -- discovery ---------------------------------------------------------------------------------------------------
def test_smart_configuration_at_the_root_and_under_the_fhir_base(demo, anon_client):
    root = anon_client.get("/.well-known/smart-configuration")
    under = anon_client.get("/fhir/.well-known/smart-configuration")
    assert root.status_code == under.status_code == 200
    assert root.headers["content-type"].startswith("application/json")
    conf = root.json()
    assert under.json() == conf
    for cap in SMART_CAPABILITIES:
        assert cap in conf["capabilities"], cap
    assert conf["issuer"] == "http://testserver" and conf["jwks_uri"] == "http://testserver/auth/jwks"
    assert conf["authorization_endpoint"] == "http://testserver/auth/authorize"
    assert conf["token_endpoint"] == "http://testserver/auth/token"
    assert conf["revocation_endpoint"] == "http://testserver/auth/revoke"
    assert conf["introspection_endpoint"] == "http://testserver/auth/introspect"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert set(conf["grant_types_supported"]) == {"authorization_code", "client_credentials", "refresh_token"}
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    for s in ("openid", "fhirUser", "launch/patient", "offline_access"):
        assert s in conf["scopes_supported"]
    assert conf["response_types_supported"] == ["code"]


def test_openid_configuration_and_jwks(demo, anon_client):
    oidc = anon_client.get("/.well-known/openid-configuration").json()
    assert oidc["issuer"] == "http://testserver" and oidc["jwks_uri"] == "http://testserver/auth/jwks"
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert oidc["subject_types_supported"] == ["public"] and "fhirUser" in oidc["claims_supported"]
    jwks = anon_client.get("/auth/jwks")
    assert jwks.status_code == 200 and jwks.headers["content-type"].startswith("application/json")
    keys = jwks.json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["use"] == "sig" and k["alg"] == "RS256" and k["kid"] for k in keys)
    assert not any(part in k for k in keys for part in ("d", "p", "q", "dp", "dq", "qi"))  # public parts only
    # An access token verifies with the published keys (no secret needed by a resource server).
    token = _backend_token(anon_client)
    claims = jwt.decode(token, KeySet.import_key_set(jwks.json()), algorithms=["RS256"]).claims
    assert claims["sub"] == "gp-system"


def test_capability_statement_carries_the_oauth_uris_extension(demo, anon_client):
    meta = anon_client.get("/fhir/metadata")
    assert meta.status_code == 200
    sec = meta.json()["rest"][0]["security"]
    assert sec["cors"] is False  # CORS is closed by default
    ext = next(e for e in sec["extension"]
               if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris")
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    assert uris == {"authorize": "http://testserver/auth/authorize", "token": "http://testserver/auth/token",
                    "revoke": "http://testserver/auth/revoke", "introspect": "http://testserver/auth/introspect"}
    assert sec["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


# -- key rotation ---------------------------------------------------------------------------------------------------
def _kid(token: str) -> str:
    import base64

    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def test_key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(demo, worker, tmp_path):
    keys_dir = tmp_path / "keys"
    http = worker(keys_dir=keys_dir)
    old = _backend_token(http)
    old_kid = _kid(old)
    assert [k["kid"] for k in http.get("/auth/jwks").json()["keys"]] == [old_kid]
    # `sharedcare keys rotate` from another process, as an operator would; the running worker notices.
    env = {**os.environ, "SHAREDCARE_KEYS_DIR": str(keys_dir), "SHAREDCARE_VAR_DIR": str(tmp_path)}
    out = subprocess.run([SHAREDCARE, "keys", "rotate"], check=False, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    new_kid = out.stdout.strip()
    assert new_kid and new_kid != old_kid
    new = _backend_token(http)
    assert _kid(new) == new_kid
    published = [k["kid"] for k in http.get("/auth/jwks").json()["keys"]]
    assert set(published) == {old_kid, new_kid}
    for token in (old, new):  # both verify during the retention period
        assert http.get("/fhir/Patient/pat-pat", headers=bearer(token)).status_code == 200
    listing = subprocess.run([SHAREDCARE, "keys", "list"], check=False, env=env, capture_output=True,
                             text=True, timeout=60)
    lines = dict(line.split("\t", 1) for line in listing.stdout.splitlines())
    assert lines[new_kid].endswith("current") and "published until" in lines[old_kid]  # (retired after that)
    # Once the retention has passed, the old key is gone from the JWKS and its tokens are refused.
    manifest = keys_dir / "keys.json"
    data = json.loads(manifest.read_text())
    for k in data["keys"]:
        if k["kid"] == old_kid:
            k["retired"] = int(time.time()) - 10 * 24 * 3600
    manifest.write_text(json.dumps(data))
    os.utime(manifest, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert [k["kid"] for k in http.get("/auth/jwks").json()["keys"]] == [new_kid]
    r = http.get("/fhir/Patient/pat-pat", headers=bearer(old))
    assert r.status_code == 401 and "signature" in r.headers["www-authenticate"]
    assert http.get("/fhir/Patient/pat-pat", headers=bearer(new)).status_code == 200


def test_signing_keys_are_generated_on_first_start_outside_the_repository(demo, worker, tmp_path):
    from service.config import PROJECT_ROOT

    keys_dir = tmp_path / "fresh-keys"
    assert not keys_dir.exists()
    http = worker(keys_dir=keys_dir)
    assert (keys_dir / "keys.json").exists()
    assert oct(keys_dir.stat().st_mode & 0o777) == "0o700"
    pems = list(keys_dir.glob("*.pem"))
    assert len(pems) == 1 and oct(pems[0].stat().st_mode & 0o777) == "0o600"
    assert http.get("/auth/jwks").json()["keys"][0]["kid"] == pems[0].stem
    # By default the keys live under var/, which the repository ignores.
    from service.config import load_settings

    default = load_settings().keys_dir if "SHAREDCARE_KEYS_DIR" not in os.environ else PROJECT_ROOT / "var" / "keys"
    assert default.is_relative_to(PROJECT_ROOT / "var") or not default.is_relative_to(PROJECT_ROOT)
    assert "var/" in (PROJECT_ROOT / ".gitignore").read_text().split()


# -- housekeeping -------------------------------------------------------------------------------------------
def test_expired_identity_rows_are_purged(demo, anon_client):
    from service.auth.housekeeping import purge_expired
    from service.auth.tables import (
        auth_assertion_jti,
        auth_code,
        auth_rate_limit,
        auth_refresh_token,
        auth_revoked,
    )

    code_flow(anon_client, "patient.pat", scope=SCOPE)  # a live refresh token
    _backend_token(anon_client)  # a live assertion jti
    now = int(time.time())
    with demo.db.write() as conn:
        conn.execute(auth_assertion_jti.insert().values(client_id="gp-system", jti="old", expires_at=now - 1))
        conn.execute(auth_revoked.insert().values(token_id="old", expires_at=now - 1))
        conn.execute(auth_code.insert().values(code_hash="h", client_id="demo-app", username="patient.pat",
                                               redirect_uri="", scope="", code_challenge="c",
                                               code_challenge_method="S256", auth_time=now, expires_at=now - 1))
        conn.execute(auth_refresh_token.insert().values(token_hash="old", grant_id="g", client_id="demo-app",
                                                        username="patient.pat", scope="", status="rotated",
                                                        issued_at=now - 99, expires_at=now - 1))
        conn.execute(auth_rate_limit.insert().values(key="login:ip:old", window_start=now - 10 * 24 * 3600, count=3))
        done = purge_expired(conn, demo.settings)
    assert done == {"auth_assertion_jti": 1, "auth_revoked": 1, "auth_code": 1, "auth_refresh_token": 1,
                    "auth_rate_limit": 1}
    with demo.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(auth_assertion_jti)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(auth_refresh_token)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(auth_rate_limit)).scalar_one() >= 1  # today's


def test_the_token_endpoint_purges_now_and_then(demo, worker):
    from service.auth.tables import auth_assertion_jti

    now = int(time.time())
    with demo.db.write() as conn:
        conn.execute(auth_assertion_jti.insert().values(client_id="gp-system", jti="stale", expires_at=now - 1))
    _backend_token(worker())  # a freshly started worker purges on its first token request
    with demo.db.read() as conn:
        jtis = [r.jti for r in conn.execute(select(auth_assertion_jti.c.jti))]
    assert "stale" not in jtis and len(jtis) == 1
