"""Security basics: sign-in takes the same work whether or not the account exists (no enumeration by timing),
secrets are compared in constant time and kept only as hashes, tokens are bound to this FHIR server's audience,
expiry and not-before hold with a small clock skew, CORS is closed unless origins are configured, and the
public URL must be https outside demo mode (TLS). On SQLite and PostgreSQL where a database is involved."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tests.auth.conftest import bearer, code_flow

# -- constant time ------------------------------------------------------------------------------------------------


def _median_seconds(fn: Any, n: int = 5) -> float:
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def test_password_check_costs_the_same_for_unknown_users(demo):
    from service.auth.identities import check_password

    with demo.db.read() as conn:
        known = _median_seconds(lambda: check_password(conn, "patient.pat", "wrong-password", demo=True))
        unknown = _median_seconds(lambda: check_password(conn, "no.such.user", "wrong-password", demo=True))
        right = _median_seconds(lambda: check_password(conn, "patient.pat", "sharedcare-demo", demo=True))
    assert known > 0.005 and unknown > 0.005  # argon2 ran for both
    assert 1 / 3 < unknown / known < 3 and 1 / 3 < right / known < 3


def test_secrets_are_compared_in_constant_time():
    """Where a presented value is compared with a stored one, it goes through compare_digest (codes and refresh
    tokens are looked up by their SHA-256, passwords checked by argon2)."""
    import inspect

    from service.auth import identities, oauth

    assert "compare_digest" in inspect.getsource(identities.Client.check_redirect_uri)
    assert "compare_digest" in inspect.getsource(oauth.RefreshRecord.check_client)
    assert "compare_digest" in inspect.getsource(oauth.TokenRecord.check_client)
    assert "compare_digest" in inspect.getsource(oauth.RefreshGrant._validate_request_token)
    assert identities.Client("c", "n", "none", (), (), "").check_client_secret("anything") is False


def test_redirect_uris_must_match_exactly(demo, anon_client):
    from tests.auth.conftest import authorize_params, pkce

    _verifier, challenge = pkce()
    for uri in ("http://127.0.0.1:8765/callback/", "http://127.0.0.1:8765/callback?x=1", "http://127.0.0.1:8765/CALLBACK",
                "http://127.0.0.1:8765/callback#frag", "http://127.0.0.1:8766/callback"):
        r = anon_client.get("/auth/authorize", params=authorize_params(challenge, redirect_uri=uri),
                            follow_redirects=False)
        assert r.status_code == 400 and "location" not in r.headers, uri


# -- audience, expiry, clock skew --------------------------------------------------------------------------------------
def _token(services: Any, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": services.settings.base_url, "aud": services.settings.fhir_base, "sub": "admin.ada",
              "iat": now, "nbf": now, "exp": now + 300, "jti": f"j-{time.time_ns()}", "scope": "user/*.rs",
              "kind": "admin", "client_id": "t"}
    claims.update(over)
    return services.auth.tokens.sign({k: v for k, v in claims.items() if v is not None}, "at+jwt")


def _status(http: Any, token: str) -> int:
    return http.get("/fhir/Patient", headers=bearer(token)).status_code


def test_tokens_are_bound_to_this_fhir_base(anon_client, clean_services):
    s = clean_services.settings
    assert _status(anon_client, _token(clean_services)) == 200
    for aud in (s.base_url, s.fhir_base + "/", "https://other.example/fhir", [s.base_url], "demo-app"):
        assert _status(anon_client, _token(clean_services, aud=aud)) == 401, aud
    assert _status(anon_client, _token(clean_services, aud=[s.fhir_base, "https://other.example"])) == 200


def test_expiry_not_before_and_issued_at_with_the_clock_skew(anon_client, clean_services):
    skew = clean_services.settings.clock_skew
    now = int(time.time())
    assert skew <= 300
    cases = [({"exp": now - skew // 2}, 200), ({"exp": now - skew - 5}, 401),
             ({"nbf": now + skew // 2}, 200), ({"nbf": now + skew + 60}, 401),
             ({"iat": now + skew + 60, "nbf": None}, 401), ({"exp": None}, 401)]
    for over, status in cases:
        assert _status(anon_client, _token(clean_services, **over)) == status, over


def test_issued_tokens_live_for_the_configured_time(demo, anon_client):
    import base64
    import json

    tok = code_flow(anon_client, "patient.pat")
    part = tok["access_token"].split(".")[1]
    c = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert c["exp"] - c["iat"] == demo.settings.access_token_ttl == tok["expires_in"]
    assert demo.settings.access_token_ttl <= 3600


# -- CORS -------------------------------------------------------------------------------------------------------------
def test_cors_is_closed_by_default(demo, anon_client, auth_headers):
    pre = anon_client.options("/fhir/Patient", headers={"Origin": "https://app.example",
                                                        "Access-Control-Request-Method": "GET",
                                                        "Access-Control-Request-Headers": "authorization"})
    assert "access-control-allow-origin" not in pre.headers
    r = anon_client.get("/fhir/Patient", headers={"Origin": "https://app.example", **auth_headers("patient.pat")})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    for path in ("/auth/token", "/.well-known/smart-configuration"):
        assert "access-control-allow-origin" not in anon_client.get(path, headers={"Origin": "https://x.example"}
                                                                    ).headers
    assert anon_client.get("/fhir/metadata").json()["rest"][0]["security"]["cors"] is False


def test_cors_opens_only_to_configured_origins(demo, worker, auth_headers):
    http = worker(cors_origins=("https://app.example",))
    pre = http.options("/fhir/Patient", headers={"Origin": "https://app.example",
                                                 "Access-Control-Request-Method": "GET",
                                                 "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in pre.headers  # bearer tokens, never cookies
    r = http.get("/fhir/Patient", headers={"Origin": "https://app.example", **auth_headers("patient.pat")})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "www-authenticate" in r.headers["access-control-expose-headers"].lower()
    other = http.options("/fhir/Patient", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    assert http.get("/fhir/metadata").json()["rest"][0]["security"]["cors"] is True


@pytest.mark.parametrize("value", ["*", "app.example", "https://a.example,*"])
def test_cors_configuration_refuses_wildcards(monkeypatch, value):
    from service.config import load_settings

    monkeypatch.setenv("SHAREDCARE_CORS_ORIGINS", value)
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "SHAREDCARE_CORS_ORIGINS" in str(exc.value)


# -- TLS ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,demo,insecure,ok", [
    ("https://records.example.nhs.uk", "0", "", True),
    ("http://records.example.nhs.uk", "0", "", False),
    ("http://records.example.nhs.uk", "1", "", True),  # demo mode
    ("http://records.example.nhs.uk", "0", "1", True),  # explicitly allowed, for a closed test network
    ("http://127.0.0.1:8000", "0", "", True),  # loopback
    ("http://localhost:8000", "0", "", True),
])
def test_the_public_url_must_be_https_outside_demo_mode(monkeypatch, url, demo, insecure, ok):
    from service.config import load_settings

    monkeypatch.setenv("SHAREDCARE_BASE_URL", url)
    monkeypatch.setenv("SHAREDCARE_DEMO", demo)
    monkeypatch.setenv("SHAREDCARE_ALLOW_INSECURE_HTTP", insecure)
    if ok:
        assert load_settings().base_url == url
    else:
        with pytest.raises(SystemExit) as exc:
            load_settings()
        assert "https" in str(exc.value) and "TLS" in str(exc.value)


@pytest.mark.parametrize("name,value", [("SHAREDCARE_CLOCK_SKEW", "600"), ("SHAREDCARE_ACCESS_TOKEN_TTL", "0"),
                                        ("SHAREDCARE_LOGIN_MAX_FAILURES", "many")])
def test_unsafe_token_settings_stop_the_start(monkeypatch, name, value):
    from service.config import load_settings

    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert name in str(exc.value)


def test_error_responses_do_not_leak_internals(demo, anon_client):
    r = anon_client.get("/fhir/Patient", headers={"Authorization": "Bearer " + "a" * 5000})
    assert r.status_code == 401 and "Traceback" not in r.text
    r = anon_client.post("/auth/token", data={"grant_type": "authorization_code", "code": "\x00\xff",
                                              "client_id": "demo-app", "code_verifier": "x", "redirect_uri": "y"})
    assert r.status_code in (400, 401) and "Traceback" not in r.text and r.json()["error"]
