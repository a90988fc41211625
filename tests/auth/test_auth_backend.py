"""SMART Backend Services: client credentials with a real signed private_key_jwt client assertion (ES384 and
RS384), the demo partner system gp-system signing with demo/gp-system.key.pem, and the refusals: a replayed
jti (also in another worker), an unknown client, expired, wrong-audience, wrongly signed or malformed
assertions. Over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.auth.conftest import (
    ASSERTION_TYPE,
    FHIR_BASE,
    TOKEN_URL,
    assertion,
    backend_form,
    bearer,
    gp_key,
    new_ec,
    new_rsa,
    register_backend,
)


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _token(http: Any, client_id: str, signed: str, scope: str = "system/*.rs") -> Any:
    return http.post("/auth/token", data=backend_form(client_id, signed, scope))


def _refused(r: Any, *words: str) -> None:
    assert r.status_code in (400, 401), r.text
    body = r.json()
    assert body["error"] == "invalid_client", body
    for w in words:
        assert w.lower() in body.get("error_description", "").lower(), (w, body)
    assert "access_token" not in body


def test_gp_system_gets_a_token_with_the_demo_key_and_reads(demo, anon_client):
    r = _token(anon_client, "gp-system", assertion("gp-system", gp_key(), "ES384"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/*.rs"
    assert body["expires_in"] == demo.settings.access_token_ttl
    assert "refresh_token" not in body and "id_token" not in body  # backend services get neither
    c = _payload(body["access_token"])
    assert c["sub"] == "gp-system" and c["client_id"] == "gp-system" and c["kind"] == "system"
    assert c["iss"] == "http://testserver" and c["aud"] == FHIR_BASE and c["jti"] and c["exp"] > c["iat"]
    assert c["organization"] == "Organization/org-gp-practice" and c["ods_code"] == "A81001"
    assert "patient" not in c and "fhirUser" not in c
    h = bearer(body["access_token"])
    # The GP practice is the registered practice of both demo patients.
    assert anon_client.get("/fhir/Patient/pat-pat", headers=h).status_code == 200
    found = anon_client.get("/fhir/Patient", params={"identifier": "https://fhir.nhs.uk/Id/nhs-number|9434765919"},
                            headers=h)
    assert found.status_code == 200 and [e["resource"]["id"] for e in found.json()["entry"]] == ["pat-pat"]
    # system/*.rs does not write.
    r = anon_client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "X"}, headers=h)
    assert r.status_code == 403


def test_gp_system_matches_its_published_jwks(demo):
    from service.config import PROJECT_ROOT

    published = json.loads((PROJECT_ROOT / "demo" / "gp-system.jwks.json").read_text())["keys"][0]
    mine = gp_key().as_dict(private=False)
    assert (mine["x"], mine["y"], mine["crv"]) == (published["x"], published["y"], published["crv"])
    assert published["kid"] == "gp-system-2026-1" and published["alg"] == "ES384"


@pytest.mark.parametrize("alg,make", [("ES384", new_ec), ("RS384", new_rsa)])
def test_registered_clients_sign_with_es384_and_rs384(demo, anon_client, alg, make):
    key = make(f"{alg.lower()}-key")
    register_backend(demo, f"partner-{alg.lower()}", key, alg)
    r = _token(anon_client, f"partner-{alg.lower()}", assertion(f"partner-{alg.lower()}", key, alg),
               scope="system/Patient.rs system/Observation.cruds")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Patient.rs system/Observation.cruds"
    c = _payload(r.json()["access_token"])
    assert c["sub"] == f"partner-{alg.lower()}" and c["ods_code"] == "A81001"
    h = bearer(r.json()["access_token"])
    assert anon_client.get("/fhir/Observation", headers=h).status_code == 200
    assert anon_client.get("/fhir/Condition", headers=h).status_code == 403


def test_without_a_scope_the_client_gets_its_registered_ceiling(demo, anon_client):
    key = new_ec()
    register_backend(demo, "partner", key, "ES384", scope="system/Patient.rs system/Observation.rs")
    form = backend_form("partner", assertion("partner", key))
    form.pop("scope")
    r = anon_client.post("/auth/token", data=form)
    assert r.status_code == 200 and r.json()["scope"] == "system/Patient.rs system/Observation.rs"


def test_scopes_beyond_the_registration_are_narrowed_or_refused(demo, anon_client):
    key = new_ec()
    register_backend(demo, "partner", key, "ES384", scope="system/Patient.rs")
    r = _token(anon_client, "partner", assertion("partner", key), scope="system/Patient.cruds system/*.rs")
    assert r.status_code == 200 and r.json()["scope"] == "system/Patient.rs"
    for scope in ("system/Observation.rs", "user/*.cruds patient/*.rs", "openid fhirUser"):
        r = _token(anon_client, "partner", assertion("partner", key), scope=scope)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope", scope
    r = _token(anon_client, "partner", assertion("partner", key), scope="system/Nonsense.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_a_replayed_assertion_is_refused(demo, anon_client, worker):
    signed = assertion("gp-system", gp_key())
    assert _token(anon_client, "gp-system", signed).status_code == 200
    _refused(_token(anon_client, "gp-system", signed), "jwt id")
    # Another worker (own engine, own process state) refuses it too: the jti is in the database.
    _refused(_token(worker(), "gp-system", signed), "jwt id")
    # A fresh jti is fine.
    assert _token(anon_client, "gp-system", assertion("gp-system", gp_key())).status_code == 200


def test_a_refused_assertion_does_not_burn_its_jti_for_the_wrong_client(demo, anon_client):
    key = new_ec()
    register_backend(demo, "partner", key, "ES384")
    jti = uuid.uuid4().hex
    assert _token(anon_client, "gp-system", assertion("gp-system", gp_key(), jti=jti)).status_code == 200
    # The same jti from another client is a different assertion.
    assert _token(anon_client, "partner", assertion("partner", key, jti=jti)).status_code == 200


def test_unknown_and_public_clients_are_refused(demo, anon_client):
    key = new_ec()
    _refused(_token(anon_client, "no-such-system", assertion("no-such-system", key)), "does not exist")
    # A public app cannot use client credentials, with or without an assertion.
    r = anon_client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "demo-app",
                                              "scope": "system/*.rs"})
    assert r.status_code in (400, 401) and r.json()["error"] in ("invalid_client", "unauthorized_client")
    # No client authentication at all.
    r = anon_client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    # A client secret (HTTP Basic) is not a credential here.
    r = anon_client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                         auth=("gp-system", "guess"))
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_a_disabled_client_is_refused(demo, anon_client):
    from service.auth.tables import auth_client

    with demo.db.write() as conn:
        conn.execute(auth_client.update().where(auth_client.c.client_id == "gp-system").values(active=False))
    _refused(_token(anon_client, "gp-system", assertion("gp-system", gp_key())))


def test_expired_and_far_future_assertions_are_refused(demo, anon_client):
    skew = demo.settings.clock_skew
    _refused(_token(anon_client, "gp-system", assertion("gp-system", gp_key(), exp_in=-(skew + 10))), "expired")
    _refused(_token(anon_client, "gp-system", assertion("gp-system", gp_key(), exp_in=3600)), "5 minutes")
    # Within the clock skew an assertion that has just expired is still fine.
    assert _token(anon_client, "gp-system", assertion("gp-system", gp_key(), exp_in=-(skew // 2))).status_code == 200


def test_the_assertion_audience_must_be_the_token_endpoint(demo, anon_client):
    for aud in (FHIR_BASE, "https://other.example.org/auth/token", "http://testserver"):
        _refused(_token(anon_client, "gp-system", assertion("gp-system", gp_key(), aud=aud)), "aud")
    assert _token(anon_client, "gp-system", assertion("gp-system", gp_key(), aud=TOKEN_URL)).status_code == 200


def test_assertions_signed_by_the_wrong_key_or_algorithm_are_refused(demo, anon_client):
    impostor = new_ec("gp-system-2026-1")  # same kid, different key
    _refused(_token(anon_client, "gp-system", assertion("gp-system", impostor)), "signature")
    # Algorithms other than RS384/ES384 are refused even with the right key.
    rsa = new_rsa("rsa-k")
    register_backend(demo, "partner", rsa, "RS384")
    _refused(_token(anon_client, "partner", assertion("partner", rsa, "RS256")), "RS384")
    # alg=none and an HMAC over the client's public key.
    now = int(time.time())
    claims = {"iss": "gp-system", "sub": "gp-system", "aud": TOKEN_URL, "exp": now + 60, "iat": now,
              "jti": uuid.uuid4().hex}
    unsigned = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    _refused(_token(anon_client, "gp-system", unsigned))
    pub = (json.dumps(gp_key().as_dict(private=False))).encode()
    hs = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(pub), algorithms=["HS256"])
    _refused(_token(anon_client, "gp-system", hs))
    # A tampered payload.
    good = assertion("gp-system", gp_key())
    head, _body, sig = good.split(".")
    _refused(_token(anon_client, "gp-system", ".".join([head, _b64({**claims, "jti": "x"}), sig])))


def test_malformed_assertions_are_refused(demo, anon_client):
    key = gp_key()
    _refused(_token(anon_client, "gp-system", assertion("gp-system", key, iss="someone-else")))
    now = int(time.time())
    no_jti = jwt.encode({"alg": "ES384", "kid": key.kid}, {"iss": "gp-system", "sub": "gp-system", "aud": TOKEN_URL,
                                                          "exp": now + 60}, key, algorithms=["ES384"])
    _refused(_token(anon_client, "gp-system", no_jti), "jwt id")
    no_exp = jwt.encode({"alg": "ES384", "kid": key.kid}, {"iss": "gp-system", "sub": "gp-system", "aud": TOKEN_URL,
                                                          "jti": uuid.uuid4().hex}, key, algorithms=["ES384"])
    _refused(_token(anon_client, "gp-system", no_exp), "exp")
    _refused(_token(anon_client, "gp-system", "not-a-jwt"))
    r = anon_client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs",
                                              "client_assertion_type": "urn:example:other",
                                              "client_assertion": assertion("gp-system", key)})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    assert ASSERTION_TYPE.endswith("jwt-bearer")
