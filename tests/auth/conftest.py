"""Fixtures for the identity tests: the demo data loaded, PKCE and client-assertion helpers."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from service.config import PROJECT_ROOT

TOKEN_URL = "http://testserver/auth/token"
FHIR_BASE = "http://testserver/fhir"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "http://127.0.0.1:8765/callback"
DEMO_PASSWORD = "sharedcare-demo"


@pytest.fixture
def demo(clean_services):  # type: ignore[no-untyped-def]
    """The demo records and identities (users, gp-system, demo-app) in a clean database."""
    from service.auth.demo import load_identities
    from service.demo.loader import load_records

    load_records(clean_services)
    load_identities(clean_services)
    return clean_services


@pytest.fixture
def worker(demo, settings):  # type: ignore[no-untyped-def]
    """Build an application as a worker process does: its own services, engine and keys loaded from disk."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.bootstrap import build_services

    built: list[Any] = []

    def make(**over: Any) -> TestClient:
        svc = build_services(settings.model_copy(update=over))
        built.append(svc)
        c = TestClient(create_app(svc.settings, services=svc), base_url="http://testserver")
        c.__enter__()
        built.append(c)
        return c

    yield make
    for item in reversed(built):
        if isinstance(item, TestClient):
            item.__exit__(None, None, None)
        else:
            item.db.dispose()


def gp_key() -> ECKey:
    return ECKey.import_key((PROJECT_ROOT / "demo" / "gp-system.key.pem").read_bytes(), {"kid": "gp-system-2026-1"})


def assertion(client_id: str, key: Any, alg: str = "ES384", *, aud: str = TOKEN_URL, jti: str | None = None,
              exp_in: int = 120, kid: str | None = None, **extra: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + exp_in, "iat": now,
              "jti": jti or uuid.uuid4().hex, **extra}
    header = {"alg": alg, "typ": "JWT", "kid": kid or key.kid}
    return jwt.encode(header, claims, key, algorithms=[alg])


def backend_form(client_id: str, signed: str, scope: str = "system/*.rs") -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed}


def register_backend(services: Any, client_id: str, key: Any, alg: str, scope: str = "system/*.cruds") -> None:
    from service.auth.identities import Client, upsert_client

    pub = key.as_dict(private=False)
    pub.update({"kid": key.kid, "alg": alg, "use": "sig"})
    with services.db.write() as conn:
        upsert_client(conn, Client(client_id=client_id, name=client_id, auth_method="private_key_jwt",
                                   grant_types=("client_credentials",), redirect_uris=(), scope=scope,
                                   organisation="Organization/org-gp-practice", ods_code="A81001",
                                   jwks={"keys": [pub]}))


def new_rsa(kid: str = "rsa-1") -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": kid}, private=True)


def new_ec(kid: str = "ec-1") -> ECKey:
    return ECKey.generate_key("P-384", {"kid": kid}, private=True)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_params(challenge: str, scope: str = "launch/patient openid fhirUser offline_access patient/*.rs",
                     **over: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "demo-app", "redirect_uri": REDIRECT, "scope": scope,
              "state": "st-" + secrets.token_hex(4), "aud": FHIR_BASE, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    params.update(over)
    return {k: v for k, v in params.items() if v is not None}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login(http: Any, params: dict[str, str], username: str, password: str = DEMO_PASSWORD,
          patient: str = "") -> Any:
    """GET the login page, then POST the form as a browser would (hidden fields + credentials)."""
    page = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert page.status_code == 200, page.text
    form = dict(params)
    form.update({"username": username, "password": password, "action": "login"})
    if patient:
        form["patient"] = patient
    return http.post("/auth/authorize", data=form, follow_redirects=False)


def code_flow(http: Any, username: str, *, scope: str = "launch/patient openid fhirUser offline_access patient/*.rs",
              patient: str = "") -> dict[str, Any]:
    verifier, challenge = pkce()
    params = authorize_params(challenge, scope=scope)
    r = login(http, params, username, patient=patient)
    assert r.status_code == 302, r.text
    q = query_of(r.headers["location"])
    assert q["state"] == params["state"]
    tok = http.post("/auth/token", data={"grant_type": "authorization_code", "code": q["code"],
                                         "redirect_uri": REDIRECT, "client_id": "demo-app",
                                         "code_verifier": verifier})
    assert tok.status_code == 200, tok.text
    return tok.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
