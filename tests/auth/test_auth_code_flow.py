"""SMART App Launch 2.0 standalone launch driven end to end over HTTP (TestClient speaks httpx): the
server-rendered login page, authorization code + PKCE (S256 only), launch/patient, openid fhirUser, and the
access token's claims. Refresh tokens are in test_auth_refresh.py. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.conftest import (
    FHIR_BASE,
    REDIRECT,
    authorize_params,
    bearer,
    code_flow,
    login,
    pkce,
    query_of,
)


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _exchange(http: Any, code: str, verifier: str, **over: str) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "demo-app",
            "code_verifier": verifier}
    form.update(over)
    return http.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


def _code(http: Any, username: str = "patient.pat", patient: str = "", **over: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    r = login(http, authorize_params(challenge, **over), username, patient=patient)
    assert r.status_code == 302, r.text
    q = query_of(r.headers["location"])
    assert "code" in q, q
    return q["code"], verifier


def _redirect_error(r: Any) -> dict[str, str]:
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(REDIRECT + "?")
    q = query_of(r.headers["location"])
    assert "code" not in q
    return q


# -- the login page -------------------------------------------------------------------------------------------
def test_login_page_is_server_rendered_and_carries_the_request(demo, anon_client):
    _verifier, challenge = pkce()
    params = authorize_params(challenge)
    r = anon_client.get("/auth/authorize", params=params)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "Shared care demo app" in page  # the client's registered name
    for scope in ("patient/*.rs", "launch/patient", "openid", "fhirUser", "offline_access"):
        assert f"<code>{scope}</code>" in page
    for name in ("state", "code_challenge", "redirect_uri", "aud", "client_id"):
        assert f'name="{name}" value="{params[name]}"' in page
    assert 'name="password"' in page and 'name="patient"' in page  # launch/patient asks which patient
    # Not cacheable, not frameable.
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert not r.cookies  # no sessions: the form carries the authorization request itself


def test_login_page_escapes_what_the_app_sent(demo, anon_client):
    _verifier, challenge = pkce()
    params = authorize_params(challenge, state='"><script>alert(1)</script>')
    r = anon_client.get("/auth/authorize", params=params)
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text


def test_wrong_password_shows_the_page_again_without_a_code(demo, anon_client):
    _verifier, challenge = pkce()
    params = authorize_params(challenge)
    r = login(anon_client, params, "patient.pat", "not-the-password")
    assert r.status_code == 401 and "location" not in r.headers
    assert "The user name or password is not right." in r.text
    assert "not-the-password" not in r.text  # the password is never echoed
    assert 'value="patient.pat"' in r.text  # the user name is kept
    # An unknown user gets the very same answer (no user enumeration).
    r2 = login(anon_client, params, "nobody.here", "not-the-password")
    assert r2.status_code == 401 and "The user name or password is not right." in r2.text
    # Empty fields do not sign anyone in either.
    r3 = anon_client.post("/auth/authorize", data={**params, "username": "patient.pat", "password": "",
                                                     "action": "login"}, follow_redirects=False)
    assert r3.status_code == 401


def test_cancel_returns_access_denied_to_the_app(demo, anon_client):
    _verifier, challenge = pkce()
    params = authorize_params(challenge)
    r = anon_client.post("/auth/authorize", data={**params, "action": "cancel"}, follow_redirects=False)
    q = _redirect_error(r)
    assert q["error"] == "access_denied" and q["state"] == params["state"]


def test_a_disabled_user_cannot_sign_in(demo, anon_client):
    from service.auth.tables import auth_user

    with demo.db.write() as conn:
        conn.execute(auth_user.update().where(auth_user.c.username == "patient.pat").values(active=False))
    _verifier, challenge = pkce()
    assert login(anon_client, authorize_params(challenge), "patient.pat").status_code == 401


# -- the authorization request ------------------------------------------------------------------------------
def test_pkce_is_required_and_only_s256(demo, anon_client):
    verifier, challenge = pkce()
    plain = anon_client.get("/auth/authorize", params=authorize_params(verifier, code_challenge_method="plain"),
                            follow_redirects=False)
    q = _redirect_error(plain)
    assert q["error"] == "invalid_request" and "S256" in q["error_description"]
    none = anon_client.get("/auth/authorize", params=authorize_params(challenge, code_challenge=None,
                                                                      code_challenge_method=None),
                           follow_redirects=False)
    q = _redirect_error(none)
    assert q["error"] == "invalid_request" and "PKCE" in q["error_description"]
    # The same refusals when the form is posted straight to the sign-in step.
    r = anon_client.post("/auth/authorize", data={**authorize_params(verifier, code_challenge_method="plain"),
                                                  "username": "patient.pat", "password": "sharedcare-demo",
                                                  "action": "login"}, follow_redirects=False)
    assert _redirect_error(r)["error"] == "invalid_request"


def test_the_audience_must_be_this_fhir_server(demo, anon_client):
    _verifier, challenge = pkce()
    for aud in ("https://other.example.org/fhir", None):
        r = anon_client.get("/auth/authorize", params=authorize_params(challenge, aud=aud), follow_redirects=False)
        q = _redirect_error(r)
        assert q["error"] == "invalid_request" and "aud" in q["error_description"]
    # A trailing slash is the same base.
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, aud=FHIR_BASE + "/"))
    assert r.status_code == 200


def test_state_is_required(demo, anon_client):
    _verifier, challenge = pkce()
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, state=None), follow_redirects=False)
    assert _redirect_error(r)["error"] == "invalid_request" and "state" in _redirect_error(r)["error_description"]


def test_unknown_client_or_unregistered_redirect_never_redirects(demo, anon_client):
    _verifier, challenge = pkce()
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, client_id="no-such-app"),
                        follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers and "does not exist" in r.text
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, redirect_uri="https://evil.example/cb"),
                        follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers and "evil.example" in r.text
    # A backend-only client cannot start a user-facing flow.
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, client_id="gp-system"),
                        follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers


def test_malformed_scope_and_other_response_types_are_refused(demo, anon_client):
    _verifier, challenge = pkce()
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, scope="patient/Nonsense.rs openid"),
                        follow_redirects=False)
    q = _redirect_error(r)
    assert q["error"] == "invalid_scope" and "Nonsense" in q["error_description"]
    r = anon_client.get("/auth/authorize", params=authorize_params(challenge, response_type="token"),
                        follow_redirects=False)
    assert _redirect_error(r)["error"] == "unsupported_response_type"


# -- the code exchange --------------------------------------------------------------------------------------------
def test_patient_standalone_launch_end_to_end(demo, anon_client):
    verifier, challenge = pkce()
    params = authorize_params(challenge, nonce="n-0S6_WzA2Mj")
    r = login(anon_client, params, "patient.pat")
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    q = query_of(location)
    assert q["state"] == params["state"] and q["code"]
    tok = _exchange(anon_client, q["code"], verifier)
    assert tok.status_code == 200, tok.text
    assert tok.headers["cache-control"] == "no-store"
    body = tok.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == demo.settings.access_token_ttl
    assert body["patient"] == "pat-pat" and body["need_patient_banner"] is False
    assert set(body["scope"].split()) == {"patient/*.rs", "launch/patient", "openid", "fhirUser", "offline_access"}
    assert body["refresh_token"] and body["id_token"]

    # The access token works on the FHIR API, for the patient's own record.
    h = bearer(body["access_token"])
    me = anon_client.get("/fhir/Patient/pat-pat", headers=h)
    assert me.status_code == 200 and me.json()["id"] == "pat-pat"
    # ...and not for another patient's.
    assert anon_client.get("/fhir/Patient/pat-paula", headers=h).status_code in (403, 404)
    # patient/*.rs does not allow writing.
    assert anon_client.put("/fhir/Patient/pat-pat", json=me.json(), headers=h).status_code == 403


def test_id_token_carries_fhir_user_and_verifies_with_the_published_keys(demo, anon_client):
    verifier, challenge = pkce()
    params = authorize_params(challenge, nonce="nonce-123")
    q = query_of(login(anon_client, params, "patient.pat").headers["location"])
    body = _exchange(anon_client, q["code"], verifier).json()
    keys = KeySet.import_key_set(anon_client.get("/auth/jwks").json())
    idt = jwt.decode(body["id_token"], keys, algorithms=["RS256"])
    c = idt.claims
    assert idt.header["alg"] == "RS256"
    assert c["iss"] == "http://testserver" and c["aud"] == "demo-app" and c["sub"] == "patient.pat"
    assert c["fhirUser"] == "http://testserver/fhir/Patient/pat-pat"
    assert c["nonce"] == "nonce-123" and c["exp"] > c["iat"] and c["auth_time"] <= c["iat"]
    # The fhirUser it names is readable with the access token.
    r = anon_client.get(c["fhirUser"].replace("http://testserver", ""), headers=bearer(body["access_token"]))
    assert r.status_code == 200
    # An id_token is not an access token.
    assert anon_client.get("/fhir/Patient/pat-pat", headers=bearer(body["id_token"])).status_code == 401


def test_no_id_token_without_openid_and_no_fhir_user_without_the_scope(demo, anon_client):
    body = code_flow(anon_client, "patient.pat", scope="launch/patient patient/*.rs")
    assert "id_token" not in body and "refresh_token" not in body
    body = code_flow(anon_client, "patient.pat", scope="launch/patient openid patient/*.rs")
    keys = KeySet.import_key_set(anon_client.get("/auth/jwks").json())
    claims = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert "fhirUser" not in claims and claims["sub"] == "patient.pat"


def test_access_token_claims_for_a_professional(demo, anon_client):
    body = code_flow(anon_client, "nurse.nina", scope="launch/patient openid fhirUser patient/*.rs user/*.rs",
                     patient="pat-pat")
    assert body["patient"] == "pat-pat" and body["need_patient_banner"] is True
    c = _payload(body["access_token"])
    assert c["iss"] == "http://testserver" and c["aud"] == FHIR_BASE and c["sub"] == "nurse.nina"
    assert c["client_id"] == "demo-app" and c["patient"] == "pat-pat" and c["jti"]
    assert c["exp"] - c["iat"] == demo.settings.access_token_ttl
    assert c["fhirUser"] == "Practitioner/prac-nina" and c["organization"] == "Organization/org-community-trust"
    assert c["ods_code"] == "RYX" and c["role_code"] == "R8001" and c["kind"] == "practitioner"
    assert set(c["scope"].split()) >= {"patient/*.rs", "user/*.rs", "launch/patient"}
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256" and header["kid"]
    # The patient in context is readable by the nurse (on pat-pat's care team).
    assert anon_client.get("/fhir/Patient/pat-pat", headers=bearer(body["access_token"])).status_code == 200


def test_staff_launch_needs_an_existing_patient(demo, anon_client):
    _verifier, challenge = pkce()
    params = authorize_params(challenge)
    r = login(anon_client, params, "nurse.nina")  # no patient chosen
    assert r.status_code == 400 and "needs a patient" in r.text and "location" not in r.headers
    r = login(anon_client, params, "nurse.nina", patient="pat-nobody")
    assert r.status_code == 400 and "no Patient with id" in r.text


def test_a_patient_cannot_pick_another_patient_at_login(demo, anon_client):
    body = code_flow(anon_client, "patient.pat", patient="pat-paula")
    assert body["patient"] == "pat-pat"
    assert _payload(body["access_token"])["patient"] == "pat-pat"
    h = bearer(body["access_token"])
    assert anon_client.get("/fhir/Patient/pat-paula", headers=h).status_code in (403, 404)


def test_scopes_are_narrowed_to_what_the_user_may_have(demo, anon_client):
    # A patient asking for write and user/ scopes gets read-only patient/ scopes.
    body = code_flow(anon_client, "patient.pat", scope="launch/patient patient/*.cruds user/*.cruds system/*.rs")
    granted = set(body["scope"].split())
    assert "patient/*.rs" in granted and not any(s.startswith(("user/", "system/")) for s in granted)
    # The app's registration bounds it too: demo-app may not carry system/ scopes, even for the administrator.
    body = code_flow(anon_client, "admin.ada", scope="openid system/*.rs user/Patient.rs")
    assert body["scope"].split() == ["user/Patient.rs", "openid"]
    # Without launch/patient (and no patient in context) a professional gets no patient/ scopes.
    body = code_flow(anon_client, "nurse.nina", scope="openid patient/*.rs user/Patient.rs")
    assert body["scope"].split() == ["user/Patient.rs", "openid"] and "patient" not in body


def test_code_works_once_with_the_right_verifier_client_and_redirect(demo, anon_client):
    code, verifier = _code(anon_client)
    wrong = _exchange(anon_client, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # The code was consumed by that attempt: the right verifier is too late now.
    late = _exchange(anon_client, code, verifier)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"

    code, verifier = _code(anon_client)
    assert _exchange(anon_client, code, None).json()["error"] == "invalid_request"  # type: ignore[arg-type]

    code, verifier = _code(anon_client)
    r = _exchange(anon_client, code, verifier, redirect_uri="http://localhost:8765/callback")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    code, verifier = _code(anon_client)
    ok = _exchange(anon_client, code, verifier)
    assert ok.status_code == 200
    replay = _exchange(anon_client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_an_expired_code_is_refused(demo, anon_client):
    from service.auth.tables import auth_code

    code, verifier = _code(anon_client)
    with demo.db.write() as conn:
        conn.execute(auth_code.update().values(expires_at=0))
    r = _exchange(anon_client, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_codes_are_stored_hashed(demo, anon_client):
    from sqlalchemy import select

    from service.auth.tables import auth_code

    code, _verifier = _code(anon_client)
    with demo.db.read() as conn:
        stored = [r.code_hash for r in conn.execute(select(auth_code.c.code_hash))]
    assert stored and code not in stored


def test_token_endpoint_refuses_bad_requests_with_oauth_errors(demo, anon_client):
    r = anon_client.post("/auth/token", data={"grant_type": "password", "username": "patient.pat",
                                              "password": "sharedcare-demo", "client_id": "demo-app"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = anon_client.post("/auth/token", json={"grant_type": "authorization_code"})
    assert r.status_code == 415 and r.json()["error"] == "invalid_request"
    r = anon_client.post("/auth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": "nope",
                                              "code_verifier": "x" * 43, "redirect_uri": REDIRECT})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    r = anon_client.post("/auth/token", content=b"a" * (70 * 1024),
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
