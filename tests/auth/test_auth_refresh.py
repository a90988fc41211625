"""Refresh tokens (offline_access / online_access): rotation on every use, reuse detection, revocation (of the
refresh token and of access tokens), and refresh after revocation refused. Over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from service.auth.tables import auth_refresh_token
from tests.auth.conftest import REDIRECT, bearer, code_flow

SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"


def _refresh(http: Any, refresh_token: str, client_id: str = "demo-app", **extra: str) -> Any:
    return http.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                          "client_id": client_id, **extra})


def _revoke(http: Any, token: str, hint: str | None = None, client_id: str = "demo-app") -> Any:
    form = {"token": token, "client_id": client_id}
    if hint:
        form["token_type_hint"] = hint
    return http.post("/auth/revoke", data=form)


def _reads(http: Any, access: str) -> int:
    return http.get("/fhir/Patient/pat-pat", headers=bearer(access)).status_code


def test_refresh_rotates_and_keeps_the_launch_context(demo, anon_client):
    first = code_flow(anon_client, "patient.pat", scope=SCOPE)
    r = _refresh(anon_client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["patient"] == "pat-pat"
    assert set(second["scope"].split()) == set(first["scope"].split())
    assert _reads(anon_client, second["access_token"]) == 200
    # The rotated-out refresh token is dead; the new one works (once).
    third = _refresh(anon_client, second["refresh_token"])
    assert third.status_code == 200
    # and the access token of the earlier refresh is still valid until it expires
    assert _reads(anon_client, second["access_token"]) == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_grant(demo, anon_client):
    first = code_flow(anon_client, "patient.pat", scope=SCOPE)
    second = _refresh(anon_client, first["refresh_token"]).json()
    replay = _refresh(anon_client, first["refresh_token"])  # a stolen copy of the old token
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The legitimate holder's newer tokens die with the grant.
    after = _refresh(anon_client, second["refresh_token"])
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    assert _reads(anon_client, second["access_token"]) == 401
    assert _reads(anon_client, first["access_token"]) == 401


def test_refresh_after_revocation_is_refused(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    assert _reads(anon_client, tok["access_token"]) == 200
    r = _revoke(anon_client, tok["refresh_token"], "refresh_token")
    assert r.status_code == 200
    refused = _refresh(anon_client, tok["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # Revoking the grant also ends the access tokens issued under it.
    r = anon_client.get("/fhir/Patient/pat-pat", headers=bearer(tok["access_token"]))
    assert r.status_code == 401 and "revoked" in r.headers["www-authenticate"]


def test_revoking_an_access_token_leaves_the_refresh_token_usable(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    assert _revoke(anon_client, tok["access_token"], "access_token").status_code == 200
    assert _reads(anon_client, tok["access_token"]) == 401
    fresh = _refresh(anon_client, tok["refresh_token"])
    assert fresh.status_code == 200 and _reads(anon_client, fresh.json()["access_token"]) == 200


def test_revocation_without_a_hint_and_of_unknown_tokens(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    assert _revoke(anon_client, tok["refresh_token"]).status_code == 200  # found without a hint
    assert _refresh(anon_client, tok["refresh_token"]).status_code == 400
    # RFC 7009: an unknown or already-revoked token is answered 200 all the same.
    assert _revoke(anon_client, "no-such-token").status_code == 200
    assert _revoke(anon_client, tok["refresh_token"]).status_code == 200


def test_another_client_cannot_use_or_revoke_the_refresh_token(demo, anon_client):
    from service.auth.identities import Client, upsert_client

    with demo.db.write() as conn:
        upsert_client(conn, Client(client_id="other-app", name="Other app", auth_method="none",
                                   grant_types=("authorization_code", "refresh_token"), redirect_uris=(REDIRECT,),
                                   scope=SCOPE))
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    stolen = _refresh(anon_client, tok["refresh_token"], client_id="other-app")
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    _revoke(anon_client, tok["refresh_token"], "refresh_token", client_id="other-app")
    # Neither the refused attempt nor the foreign revocation consumed the owner's token: it still refreshes.
    assert _refresh(anon_client, tok["refresh_token"]).status_code == 200


def test_refresh_may_narrow_but_not_widen_the_scope(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope="launch/patient offline_access patient/Observation.rs "
                                                        "patient/Patient.rs")
    for wider in ("patient/*.rs offline_access", "patient/Patient.rs user/Patient.rs", "patient/Patient.cruds",
                  "patient/Patient.rs openid"):
        r = _refresh(anon_client, tok["refresh_token"], scope=wider)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope", wider
    # The refused attempts consumed nothing. Scopes are compared parsed: .r is within .rs, .read is .rs.
    narrower = _refresh(anon_client, tok["refresh_token"], scope="patient/Patient.r patient/Observation.read")
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "patient/Patient.r patient/Observation.rs"
    h = bearer(body["access_token"])
    assert anon_client.get("/fhir/Patient/pat-pat", headers=h).status_code == 200
    assert anon_client.get("/fhir/Patient", headers=h).status_code == 403  # no s any more
    # The narrowing applied to that access token only: the next refresh gets the whole grant back.
    again = _refresh(anon_client, body["refresh_token"])
    assert again.status_code == 200
    assert set(again.json()["scope"].split()) == {"patient/Observation.rs", "patient/Patient.rs", "launch/patient",
                                                  "offline_access"}


def test_no_refresh_token_without_offline_or_online_access(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope="launch/patient openid patient/*.rs")
    assert "refresh_token" not in tok


def test_online_access_refresh_tokens_are_short_lived_and_offline_ones_long(demo, anon_client):
    settings = demo.settings
    online = code_flow(anon_client, "patient.pat", scope="launch/patient online_access patient/*.rs")
    offline = code_flow(anon_client, "patient.pat", scope=SCOPE)
    with demo.db.read() as conn:
        rows = {r.scope: r.expires_at - r.issued_at for r in conn.execute(select(auth_refresh_token))}
        stored = {r.token_hash for r in conn.execute(select(auth_refresh_token))}
    lifetimes = sorted(rows.values())
    assert lifetimes == sorted([min(settings.refresh_token_ttl, 12 * 3600), settings.refresh_token_ttl])
    assert online["refresh_token"] not in stored and offline["refresh_token"] not in stored  # hashed at rest


def test_an_expired_refresh_token_is_refused(demo, anon_client):
    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    with demo.db.write() as conn:
        conn.execute(auth_refresh_token.update().values(expires_at=int(time.time()) - 1))
    r = _refresh(anon_client, tok["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_a_disabled_user_cannot_refresh(demo, anon_client):
    from service.auth.tables import auth_user

    tok = code_flow(anon_client, "patient.pat", scope=SCOPE)
    with demo.db.write() as conn:
        conn.execute(auth_user.update().where(auth_user.c.username == "patient.pat").values(active=False))
    r = _refresh(anon_client, tok["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
