"""The session cookie's flags and sealing, without a server."""

from __future__ import annotations

from service.web.session import SESSION_MAX_AGE, Sealer, Session, csrf_ok


def _session() -> Session:
    return Session(access_token="eyJ.token.sig", expires_at=10**10, refresh_token="r", csrf="c" * 32,
                   subject="patient.pat", kind="patient", name="Pat Example", patient="pat-pat")


def test_the_cookie_is_secure_behind_https_and_always_httponly_and_samesite(settings):
    https = Sealer(settings.model_copy(update={"base_url": "https://care.example.org"}))
    args = https.cookie_args(SESSION_MAX_AGE)
    assert args["secure"] is True and args["httponly"] is True and args["samesite"] in ("lax", "strict")
    http = Sealer(settings).cookie_args(SESSION_MAX_AGE)
    assert http["secure"] is False and http["httponly"] is True


def test_the_session_is_sealed_and_only_this_server_can_open_it(settings, tmp_path):
    sealer = Sealer(settings)
    sealed = sealer.session_cookie(_session())
    assert "eyJ" not in sealed and "patient.pat" not in sealed
    assert sealer.session(sealed) == _session()
    other = Sealer(settings.model_copy(update={"keys_dir": tmp_path}))  # another server secret
    assert other.session(sealed) is None
    assert sealer.session(sealed[:-2] + "xx") is None
    assert sealer.session(None) is None and sealer.session("") is None


def test_csrf_tokens_are_compared_exactly():
    s = _session()
    assert csrf_ok(s, "c" * 32)
    assert not csrf_ok(s, None) and not csrf_ok(s, "") and not csrf_ok(s, "c" * 31)
