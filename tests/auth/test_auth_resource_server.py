"""Every /fhir request needs a valid bearer token: missing, expired, wrong-audience, wrong-issuer, tampered,
alg=none, HS256 key confusion, an ID token, a revoked token; 403 with an OperationOutcome for a scope that
does not reach. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.auth.conftest import bearer


def _claims(services, **over):  # type: ignore[no-untyped-def]
    now = int(time.time())
    claims = {"iss": services.settings.base_url, "aud": services.settings.fhir_base, "sub": "admin.ada",
              "iat": now, "nbf": now, "exp": now + 300, "jti": "j-" + str(now), "scope": "user/*.cruds",
              "kind": "admin", "client_id": "t"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(services, claims, typ="at+jwt"):  # type: ignore[no-untyped-def]
    return services.auth.tokens.sign(claims, typ)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _assert_401(r, *words):  # type: ignore[no-untyped-def]
    assert r.status_code == 401, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="http://testserver/fhir"')
    for w in words:
        assert w in challenge or w in r.text, (w, challenge)


def test_metadata_and_smart_discovery_are_public(anon_client):
    meta = anon_client.get("/fhir/metadata")
    assert meta.status_code == 200
    sec = meta.json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in sec["extension"][0]["extension"]}
    assert sec["extension"][0]["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert uris["authorize"] == "http://testserver/auth/authorize" and uris["token"] == "http://testserver/auth/token"
    assert sec["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    for path in ("/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        conf = anon_client.get(path).json()
        assert conf["token_endpoint"] == "http://testserver/auth/token"
        assert conf["code_challenge_methods_supported"] == ["S256"]
        for cap in ("permission-v2", "permission-v1", "launch-standalone", "client-public",
                    "client-confidential-asymmetric", "context-standalone-patient", "sso-openid-connect"):
            assert cap in conf["capabilities"]
    oidc = anon_client.get("/.well-known/openid-configuration").json()
    assert oidc["issuer"] == "http://testserver" and oidc["jwks_uri"] == "http://testserver/auth/jwks"
    assert anon_client.get("/auth/jwks").json()["keys"][0]["alg"] == "RS256"


def test_missing_token_is_401_with_a_challenge_and_nothing_is_read(anon_client):
    for method, path in (("GET", "/fhir/Patient/pat-pat"), ("GET", "/fhir/Patient"), ("POST", "/fhir"),
                         ("GET", "/fhir/_history"), ("DELETE", "/fhir/Patient/x")):
        r = anon_client.request(method, path)
        _assert_401(r)
        assert "error=" not in r.headers["www-authenticate"]  # RFC 6750: no error code without credentials


def test_not_a_bearer_scheme_is_refused(anon_client):
    _assert_401(anon_client.get("/fhir/Patient", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}),
                'error="invalid_request"')


def test_expired_token_is_refused_after_the_clock_skew(anon_client, clean_services):
    skew = clean_services.settings.clock_skew
    past = int(time.time()) - skew - 5
    old = _sign(clean_services, _claims(clean_services, exp=past, iat=past - 300, nbf=past - 300))
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(old)), 'error="invalid_token"', "expired")
    within = int(time.time()) - skew // 2
    fine = _sign(clean_services, _claims(clean_services, exp=within, iat=within - 300, nbf=within - 300))
    assert anon_client.get("/fhir/Patient", headers=bearer(fine)).status_code == 200


def test_wrong_audience_wrong_issuer_and_no_jti_are_refused(anon_client, clean_services):
    aud = _sign(clean_services, _claims(clean_services, aud="https://other.example.org/fhir"))
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(aud)), "aud")
    iss = _sign(clean_services, _claims(clean_services, iss="https://evil.example.org"))
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(iss)), "issuer")
    nojti = _sign(clean_services, _claims(clean_services, jti=None))
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(nojti)), "jti")


def test_tampered_token_is_refused(anon_client, clean_services):
    token = _sign(clean_services, _claims(clean_services, scope="patient/*.rs", patient="pat-pat", kind="patient"))
    head, _payload, sig = token.split(".")
    forged = ".".join([head, _b64(_claims(clean_services, scope="user/*.cruds")), sig])
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(forged)), "signature")
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(token[:-4] + "AAAA")), "signature")
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer("not.a.jwt")))


def test_alg_none_and_hmac_key_confusion_are_refused(anon_client, clean_services):
    claims = _claims(clean_services)
    unsigned = _b64({"alg": "none", "typ": "at+jwt"}) + "." + _b64(claims) + "."
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(unsigned)), "alg")
    # HS256 "signed" with the server's public key as the secret (the classic confusion attack)
    pub = json.dumps(anon_client.get("/auth/jwks").json()["keys"][0]).encode()
    hs = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, OctKey.import_key(pub), algorithms=["HS256"])
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(hs)), "alg")


def test_an_id_token_is_not_an_access_token(anon_client, clean_services):
    id_like = _sign(clean_services, _claims(clean_services), typ="JWT")
    _assert_401(anon_client.get("/fhir/Patient", headers=bearer(id_like)), "typ")


def test_a_token_revoked_elsewhere_is_refused_within_the_stated_seconds(anon_client, clean_services):
    """A revocation made by another process (here: written to the database directly) is honoured by this one
    within SHAREDCARE_REVOCATION_CHECK_SECONDS (shortened here)."""
    from service.auth.oauth import insert_ignore
    from service.auth.tables import auth_revoked

    cache = clean_services.auth.tokens.revocations
    saved, cache.seconds = cache.seconds, 0.3
    try:
        token = _sign(clean_services, _claims(clean_services, jti="to-revoke"))
        assert anon_client.get("/fhir/Patient", headers=bearer(token)).status_code == 200
        with clean_services.db.write() as conn:
            insert_ignore(conn, auth_revoked, {"token_id": "to-revoke", "expires_at": int(time.time()) + 600})
        time.sleep(0.4)
        _assert_401(anon_client.get("/fhir/Patient", headers=bearer(token)), "revoked")
    finally:
        cache.seconds = saved


def test_insufficient_scope_is_403_with_an_operation_outcome(anon_client, clean_services, auth_headers):
    from tests.api.support import patient

    h = auth_headers("nurse.nina", scope="user/Observation.rs")
    r = anon_client.post("/fhir/Patient", json=patient(), headers=h)
    assert r.status_code == 403
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "forbidden"
    assert "create on Patient" in body["issue"][0]["diagnostics"]
    assert anon_client.get("/fhir/Patient/x", headers=h).status_code == 403
    assert anon_client.get("/fhir/Observation", headers=h).status_code == 200
    with clean_services.db.read() as conn:
        assert clean_services.store.current(conn, "Patient", "x") is None


def test_purpose_of_use_headers_reach_the_context(clean_services, auth_headers):
    from service.fhir.request import FhirRequest

    authn = clean_services.authenticator
    h = {k.lower(): v for k, v in auth_headers("nurse.nina").items()}
    ctx = authn(FhirRequest("GET", "Patient/pat-pat", headers=h), clean_services)
    assert ctx.purpose_of_use == ("TREAT",) and ctx.break_glass_reason is None
    p = ctx.principal
    assert (p.subject, p.kind, p.fhir_user, p.organisation, p.ods_code, p.role_code) == (
        "nurse.nina", "practitioner", "Practitioner/prac-nina", "Organization/org-community-trust", "RYX", "R8001")
    assert p.roles == {"clinician"} and p.token_id and p.scopes.allows("r", "Patient")
    h.update({"x-purpose-of-use": "BTG", "x-break-glass-reason": "Unconscious in A&E"})
    ctx = authn(FhirRequest("GET", "Patient/pat-pat", headers=h), clean_services)
    assert ctx.purpose_of_use == ("BTG",) and ctx.break_glass_reason == "Unconscious in A&E"
    from service.fhir.outcome import OperationOutcomeError

    h["x-purpose-of-use"] = "BTG; DROP TABLE"
    with pytest.raises(OperationOutcomeError) as err:
        authn(FhirRequest("GET", "Patient/pat-pat", headers=h), clean_services)
    assert err.value.status == 400
