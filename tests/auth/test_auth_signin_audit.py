"""Sign-ins and token requests are audited (IHE BALP User Authentication events), successes and refusals, and
an IG lead finds them with an ordinary AuditEvent search. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.auth.conftest import assertion, authorize_params, backend_form, code_flow, gp_key, login, pkce

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _auth_events(http: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = http.get("/fhir/AuditEvent", params={"type": f"{DCM}|110114", "_count": "100", "_sort": "-date"},
                 headers=headers)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _subtype(ev: dict[str, Any]) -> str:
    return ev["subtype"][0]["code"]


def _user(ev: dict[str, Any]) -> str | None:
    for a in ev["agent"]:
        ident = a.get("who", {}).get("identifier", {})
        if a.get("requestor") and ident.get("value") and a.get("altId"):
            return ident["value"]
    return None


def test_sign_ins_and_token_requests_are_audited(demo, anon_client, auth_headers):
    ig = auth_headers("ig.iris")
    code_flow(anon_client, "patient.pat")
    _verifier, challenge = pkce()
    assert login(anon_client, authorize_params(challenge), "patient.pat", "wrong-password").status_code == 401
    gp = anon_client.post("/auth/token", data=backend_form("gp-system", assertion("gp-system", gp_key())))
    assert gp.status_code == 200
    bad = anon_client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "nope",
                                                "client_id": "demo-app"})
    assert bad.status_code == 400
    events = _auth_events(anon_client, ig)
    logins = [e for e in events if _subtype(e) == "110122"]
    tokens = [e for e in events if _subtype(e) == "token-issued"]
    ok_login = [e for e in logins if e["outcome"] == "0"]
    failed_login = [e for e in logins if e["outcome"] != "0"]
    assert len(ok_login) == 1 and _user(ok_login[0]) == "patient.pat"
    assert any(a.get("who", {}).get("reference") == "Patient/pat-pat" for a in ok_login[0]["agent"])
    assert len(failed_login) == 1 and "wrong user name or password" in failed_login[0]["outcomeDesc"]
    assert "wrong-password" not in str(failed_login[0])  # the password itself is never recorded
    ok_tokens = [e for e in tokens if e["outcome"] == "0"]
    assert len(ok_tokens) == 2
    descs = sorted(e["outcomeDesc"] for e in ok_tokens)
    assert descs == ["grant_type=authorization_code", "grant_type=client_credentials"]
    failed = [e for e in tokens if e["outcome"] != "0"]
    assert len(failed) == 1 and "invalid_grant" in failed[0]["outcomeDesc"]
    # The audited events name the client and the network address.
    gp_event = next(e for e in ok_tokens if "client_credentials" in e["outcomeDesc"])
    clients = [a for a in gp_event["agent"] if a.get("who", {}).get("identifier", {}).get("value") == "gp-system"]
    assert clients and any("network" in a for a in gp_event["agent"])


def test_a_locked_account_is_audited(demo, anon_client, auth_headers):
    _verifier, challenge = pkce()
    params = authorize_params(challenge)
    for _ in range(demo.settings.login_max_failures):
        login(anon_client, params, "patient.paula", "wrong-password")
    assert login(anon_client, params, "patient.paula").status_code == 429
    events = _auth_events(anon_client, auth_headers("ig.iris"))
    locked = [e for e in events if "locked" in e.get("outcomeDesc", "")]
    assert len(locked) == 1 and locked[0]["outcome"] != "0"
