"""Login throttling and rate limits on the login and token endpoints. The counters live in the database, so
they hold across worker processes: a second application instance with its own engine (as another worker
would have) sees the same lockout. (test_auth_running_server.py checks it across real processes.)"""

from __future__ import annotations

import time

from sqlalchemy import select

from service.auth.tables import auth_rate_limit
from tests.auth.conftest import authorize_params, login, pkce

WRONG = "not-the-password"


def _avoid_window_edge(window: int) -> None:
    """Fixed-window counters reset at a window boundary: start well inside a window."""
    left = window - time.time() % window
    if left < 3:
        time.sleep(left + 0.1)


def _params() -> dict[str, str]:
    return authorize_params(pkce()[1])


def test_repeated_wrong_passwords_lock_the_account(demo, anon_client):
    _avoid_window_edge(demo.settings.login_lockout_seconds)
    params = _params()
    for _ in range(demo.settings.login_max_failures):
        assert login(anon_client, params, "patient.pat", WRONG).status_code == 401
    locked = login(anon_client, params, "patient.pat")  # the right password, too late
    assert locked.status_code == 429 and "location" not in locked.headers
    assert "Too many failed sign-ins for this account" in locked.text
    # Other accounts are not affected.
    assert login(anon_client, params, "patient.paula").status_code == 302


def test_the_lockout_holds_in_another_worker(demo, anon_client, worker):
    _avoid_window_edge(demo.settings.login_lockout_seconds)
    params = _params()
    other = worker()
    for i in range(demo.settings.login_max_failures):  # failures spread over both workers
        http = anon_client if i % 2 else other
        assert login(http, params, "patient.paula", WRONG).status_code == 401
    assert login(anon_client, params, "patient.paula").status_code == 429
    assert login(other, params, "patient.paula").status_code == 429
    with demo.db.read() as conn:
        rows = {r.key: r.count for r in conn.execute(select(auth_rate_limit))}
    assert rows["login-fail:user:patient.paula"] == demo.settings.login_max_failures


def test_a_successful_sign_in_clears_the_failures(demo, anon_client):
    _avoid_window_edge(demo.settings.login_lockout_seconds)
    params = _params()
    n = demo.settings.login_max_failures
    for _ in range(n - 1):
        assert login(anon_client, params, "patient.pat", WRONG).status_code == 401
    assert login(anon_client, params, "patient.pat").status_code == 302
    for _ in range(n - 1):
        assert login(anon_client, params, "patient.pat", WRONG).status_code == 401
    assert login(anon_client, params, "patient.pat").status_code == 302


def test_the_lockout_ends_after_its_window(demo, anon_client):
    _avoid_window_edge(demo.settings.login_lockout_seconds)
    params = _params()
    for _ in range(demo.settings.login_max_failures):
        login(anon_client, params, "patient.pat", WRONG)
    assert login(anon_client, params, "patient.pat").status_code == 429
    with demo.db.write() as conn:  # as if the lockout window had passed
        conn.execute(auth_rate_limit.update().values(window_start=auth_rate_limit.c.window_start
                                                     - demo.settings.login_lockout_seconds))
    assert login(anon_client, params, "patient.pat").status_code == 302


def test_sign_in_attempts_per_address_are_limited_across_workers(demo, worker):
    _avoid_window_edge(60)
    a, b = worker(login_rate_per_minute=3), worker(login_rate_per_minute=3)
    params = _params()
    users = ["patient.pat", "patient.paula", "nurse.nina"]  # different accounts: not the per-account lockout
    for i, user in enumerate(users):
        assert login(a if i % 2 else b, params, user, WRONG).status_code == 401
    r = login(a, params, "coord.cara")
    assert r.status_code == 429 and "Too many sign-in attempts from your network" in r.text


def test_token_endpoint_is_rate_limited_across_workers(demo, worker):
    _avoid_window_edge(60)
    a, b = worker(token_rate_per_minute=4), worker(token_rate_per_minute=4)
    form = {"grant_type": "refresh_token", "refresh_token": "nope", "client_id": "demo-app"}
    for i in range(4):
        assert (a if i % 2 else b).post("/auth/token", data=form).status_code == 400
    r = b.post("/auth/token", data=form)
    assert r.status_code == 429 and r.json()["error"] == "invalid_request"
    assert 1 <= int(r.headers["retry-after"]) <= 60
