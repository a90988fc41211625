"""Tokens from an external OpenID Connect issuer (NHS CIS2 for staff, NHS login for patients, or any OIDC
provider): accepted when configured (issuer, JWKS URL, claims map), so the embedded server is a default, not a
lock-in. The issuer's JWKS is served by a local HTTP server. Also the configuration checks and the refusals
(wrong audience, expired, unknown key, symmetric algorithms, untrusted issuer, keys unavailable).
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from tests.auth.conftest import bearer

ISSUER = "https://idp.example.nhs.uk/openam/oauth2/realms/root/realms/oidc"
FHIR_BASE = "http://testserver/fhir"
CIS2_MAP = {"fhir_user": "fhirUser", "organisation": "sc_org", "ods_code": "nhsid_nrbac_roles.0.org_code",
            "role_code": "nhsid_nrbac_roles.0.role_code", "roles": "sc_roles", "subject": "uid"}


class Idp:
    """An identity provider's signing keys and its JWKS endpoint (on a local port)."""

    def __init__(self) -> None:
        self.keys: list[Any] = [RSAKey.generate_key(2048, {"kid": "idp-rsa-1"}, private=True)]
        self.fetches = 0
        self.up = True
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.fetches += 1
                if not idp.up or self.path != "/jwks.json":
                    self.send_response(503 if not idp.up else 404)
                    self.end_headers()
                    return
                body = json.dumps(idp.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def jwks(self) -> dict[str, Any]:
        out = []
        for k in self.keys:
            d = k.as_dict(private=False)
            d.update({"kid": k.kid, "use": "sig"})
            out.append(d)
        return {"keys": out}

    def token(self, key: Any = None, alg: str = "RS256", **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": ISSUER, "aud": FHIR_BASE, "iat": now, "exp": now + 300, "sub": "external-subject"}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, body, key, algorithms=[alg])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def idp() -> Iterator[Idp]:
    server = Idp()
    yield server
    server.close()


@pytest.fixture
def external(worker, idp):  # type: ignore[no-untyped-def]
    """An application configured to accept the external issuer's tokens (with the CIS2 claims map)."""
    return worker(external_issuer=ISSUER, external_jwks_url=idp.url, external_claims_map=CIS2_MAP)


def _cis2_nurse(idp: Idp, **over: Any) -> str:
    claims = {"uid": "555000000001", "sub": "cis2-sub-1", "scope": "user/*.rs", "fhirUser": "Practitioner/prac-nina",
              "sc_org": "Organization/org-community-trust", "sc_roles": ["clinician"],
              "nhsid_nrbac_roles": [{"org_code": "RYX", "role_code": "R8001", "person_roleid": "5550001"}]}
    claims.update(over)
    return idp.token(**claims)


def _context(app_client: Any, token: str) -> Any:
    from service.fhir.request import FhirRequest

    services = app_client.app.state.services
    return services.authenticator(
        FhirRequest("GET", "Patient/pat-pat", headers={"authorization": f"Bearer {token}"}), services)


# -- accepted ------------------------------------------------------------------------------------------------------
def test_a_staff_token_from_the_external_issuer_maps_to_the_request_context(demo, external, idp):
    token = _cis2_nurse(idp)
    p = _context(external, token).principal
    assert (p.subject, p.kind, p.fhir_user, p.organisation, p.ods_code, p.role_code) == (
        "555000000001", "practitioner", "Practitioner/prac-nina", "Organization/org-community-trust", "RYX", "R8001")
    assert p.roles == {"clinician"} and p.patient is None and p.scopes.allows("r", "Patient")
    # nurse.nina's identity from CIS2 reads her patient's record.
    r = external.get("/fhir/Patient/pat-pat", headers=bearer(token))
    assert r.status_code == 200, r.text
    # Scopes still bound what the external token may do.
    r = external.post("/fhir/Goal", json={"resourceType": "Goal", "lifecycleStatus": "proposed",
                                          "description": {"text": "x"}, "subject": {"reference": "Patient/pat-pat"}},
                      headers=bearer(token))
    assert r.status_code == 403


def test_a_patient_token_from_the_external_issuer_is_confined_to_that_patient(demo, external, idp):
    token = idp.token(sub="nhs-login-9434765919", scope="patient/*.rs",
                      fhirUser="https://nhs-login.example/fhir/Patient/pat-pat")
    p = _context(external, token).principal
    assert p.kind == "patient" and p.patient == "pat-pat" and p.fhir_user == "Patient/pat-pat"
    assert external.get("/fhir/Patient/pat-pat", headers=bearer(token)).status_code == 200
    assert external.get("/fhir/Patient/pat-paula", headers=bearer(token)).status_code in (403, 404)
    r = external.get("/fhir/Patient", headers=bearer(token))
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == ["pat-pat"]


def test_scopes_given_as_a_list_in_scp(demo, external, idp):
    token = idp.token(scp=["patient/Patient.rs"], fhirUser="Patient/pat-pat")
    p = _context(external, token).principal
    assert p.scopes.text() == "patient/Patient.rs" and p.patient == "pat-pat"


def test_es384_and_a_rotated_idp_key(demo, external, idp):
    ec = ECKey.generate_key("P-384", {"kid": "idp-ec-1"}, private=True)
    idp.keys.append(ec)
    assert external.get("/fhir/metadata").status_code == 200
    # The JWKS was fetched before the new key existed? Then an unknown kid makes the server fetch again (not more
    # often than every 30 seconds, so a flood of made-up kids cannot hammer the issuer).
    tokens = external.app.state.services.auth.tokens
    first = _cis2_nurse(idp)
    assert external.get("/fhir/Patient/pat-pat", headers=bearer(first)).status_code == 200
    fetched = idp.fetches
    newer = RSAKey.generate_key(2048, {"kid": "idp-rsa-2"}, private=True)
    idp.keys.append(newer)
    signed_new = idp.token(key=newer, uid="555000000001", scope="user/*.rs", fhirUser="Practitioner/prac-nina",
                           sc_org="Organization/org-community-trust")
    assert external.get("/fhir/Patient/pat-pat", headers=bearer(signed_new)).status_code == 401  # within 30 s
    assert idp.fetches == fetched
    tokens._external._fetched -= 31  # as if 31 seconds had passed
    assert external.get("/fhir/Patient/pat-pat", headers=bearer(signed_new)).status_code == 200
    assert idp.fetches == fetched + 1
    es = idp.token(key=ec, alg="ES384", scope="patient/*.rs", fhirUser="Patient/pat-pat")
    assert external.get("/fhir/Patient/pat-pat", headers=bearer(es)).status_code == 200


# -- refused -----------------------------------------------------------------------------------------------------------
def _refused(http: Any, token: str, *words: str) -> None:
    r = http.get("/fhir/Patient/pat-pat", headers=bearer(token))
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    for w in words:
        assert w in challenge, (w, challenge)


def test_external_tokens_are_checked_like_ours(demo, external, idp):
    _refused(external, _cis2_nurse(idp, aud="https://other.example.org/fhir"), "aud")
    _refused(external, _cis2_nurse(idp, exp=int(time.time()) - 3600, iat=int(time.time()) - 4000), "expired")
    stranger = RSAKey.generate_key(2048, {"kid": "idp-rsa-1"}, private=True)  # the issuer's kid, not its key
    _refused(external, idp.token(key=stranger, scope="user/*.rs"), "signature")
    # Symmetric algorithms are never accepted (not even keyed with the issuer's public key).
    pub = json.dumps(idp.jwks()["keys"][0]).encode()
    hs = jwt.encode({"alg": "HS256", "kid": "idp-rsa-1"}, {"iss": ISSUER, "aud": FHIR_BASE, "sub": "x",
                                                         "exp": int(time.time()) + 60, "scope": "user/*.cruds"},
                    OctKey.import_key(pub), algorithms=["HS256"])
    _refused(external, hs, "alg")
    # Another issuer is not trusted, even when its token is signed with a key the JWKS has.
    _refused(external, idp.token(iss="https://evil.example.org", scope="user/*.rs"), "issuer")
    # A malformed scope is refused rather than ignored.
    _refused(external, idp.token(scope="user/Nonsense.rs"), "scope")


def test_without_configuration_external_tokens_are_refused(demo, anon_client, idp):
    _refused(anon_client, _cis2_nurse(idp), "issuer")


def test_an_unreachable_jwks_is_a_401_not_a_crash(demo, external, idp):
    idp.up = False
    _refused(external, _cis2_nurse(idp), "unavailable")
    idp.up = True  # the next request (no key set cached yet) fetches again
    assert external.get("/fhir/Patient/pat-pat", headers=bearer(_cis2_nurse(idp))).status_code == 200


def test_our_introspection_does_not_vouch_for_external_tokens(demo, external, idp):
    r = external.post("/auth/introspect", data={"token": _cis2_nurse(idp), "client_id": "demo-app"})
    assert r.status_code == 200 and r.json() == {"active": False}


def test_the_verifier_uses_the_configured_audience(demo, worker, idp):
    http = worker(external_issuer=ISSUER, external_jwks_url=idp.url, external_audience="api://sharedcare")
    assert http.get("/fhir/Patient/pat-pat", headers=bearer(idp.token(
        aud="api://sharedcare", scope="patient/*.rs", fhirUser="Patient/pat-pat"))).status_code == 200
    _refused(http, idp.token(scope="patient/*.rs", fhirUser="Patient/pat-pat"), "aud")  # the FHIR base is not it


# -- configuration --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env,words", [
    ({"SHAREDCARE_EXTERNAL_ISSUER": ISSUER}, "must be set together"),
    ({"SHAREDCARE_EXTERNAL_JWKS_URL": "https://idp.example/jwks"}, "must be set together"),
    ({"SHAREDCARE_EXTERNAL_ISSUER": ISSUER, "SHAREDCARE_EXTERNAL_JWKS_URL": "http://idp.example/jwks"}, "https"),
    ({"SHAREDCARE_EXTERNAL_ISSUER": ISSUER, "SHAREDCARE_EXTERNAL_JWKS_URL": "https://idp.example/jwks",
      "SHAREDCARE_EXTERNAL_ALGORITHMS": "RS256,HS256"}, "HS256"),
    ({"SHAREDCARE_EXTERNAL_ISSUER": ISSUER, "SHAREDCARE_EXTERNAL_JWKS_URL": "https://idp.example/jwks",
      "SHAREDCARE_EXTERNAL_CLAIMS_MAP": '{"favourite_colour": "x"}'}, "unknown fields"),
    ({"SHAREDCARE_EXTERNAL_ISSUER": ISSUER, "SHAREDCARE_EXTERNAL_JWKS_URL": "https://idp.example/jwks",
      "SHAREDCARE_EXTERNAL_CLAIMS_MAP": "not json"}, "not JSON"),
])
def test_bad_external_configuration_stops_the_start(monkeypatch, env, words):
    from service.config import load_settings

    for k in [k for k in os.environ if k.startswith("SHAREDCARE_EXTERNAL")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert words in str(exc.value)


def test_good_external_configuration_is_read(monkeypatch):
    from service.config import load_settings

    monkeypatch.setenv("SHAREDCARE_EXTERNAL_ISSUER", ISSUER)
    monkeypatch.setenv("SHAREDCARE_EXTERNAL_JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("SHAREDCARE_EXTERNAL_CLAIMS_MAP", json.dumps(CIS2_MAP))
    monkeypatch.setenv("SHAREDCARE_EXTERNAL_ALGORITHMS", "RS256,ES384")
    s = load_settings()
    assert (s.external_issuer, s.external_jwks_url, s.external_claims_map, s.external_algorithms) == (
        ISSUER, "https://idp.example/jwks", CIS2_MAP, ("RS256", "ES384"))
