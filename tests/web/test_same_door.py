"""The pages have no second data path: a page view is audited exactly like the FHIR API call it makes, with the
same token. Also: CSRF on every form, plain-word errors, security headers. (TestClient: no browser needed.)"""

from __future__ import annotations

import re

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.audit.tables import audit_log

SAME = ("patient_id", "kind", "interaction", "action", "outcome", "status", "agent", "altid", "organisation",
        "client", "purpose", "target")


@pytest.fixture
def web(app, demo):
    from service.auth.demo import load_identities

    load_identities(demo)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def sign_in(c: TestClient, username: str) -> None:
    r = c.get("/web/sign-in")
    assert r.status_code == 303
    page = c.get(r.headers["location"])
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    form.update(username=username, password="sharedcare-demo", action="login")
    r = c.post("/auth/authorize", data=form)
    assert r.status_code == 302, r.text
    r = c.get(r.headers["location"])
    assert r.status_code == 303 and "sc_session" in r.cookies


def rows(services, **where) -> list:
    q = select(audit_log).order_by(audit_log.c.seq)
    for k, v in where.items():
        q = q.where(getattr(audit_log.c, k) == v)
    with services.db.read() as conn:
        return list(conn.execute(q))


def test_a_page_view_is_audited_exactly_like_the_api_call_it_makes(web, app, demo):
    sign_in(web, "patient.pat")
    assert web.get("/web/my-care-plan").status_code == 200
    page_rows = rows(demo, interaction="search-type", target="CarePlan")
    assert len(page_rows) == 1
    page_row = page_rows[0]
    session = app.state.web.sealer.session(web.cookies.get("sc_session"))
    api = web.get("/fhir/CarePlan", params=[("subject", "Patient/pat-pat"), ("status", "active,draft"),
                                             ("_count", "20")],
                  headers={"Authorization": f"Bearer {session.access_token}"})
    assert api.status_code == 200
    api_row = rows(demo, interaction="search-type", target="CarePlan")[-1]
    assert api_row.seq != page_row.seq
    assert {k: getattr(page_row, k) for k in SAME} == {k: getattr(api_row, k) for k in SAME}
    assert page_row.client == "sharedcare-web" and page_row.altid == "patient.pat"
    page_detail, api_detail = orjson.loads(page_row.detail), orjson.loads(api_row.detail)
    for d in (page_detail, api_detail):
        d.pop("remote", None)
        d.pop("agent", None)
    assert page_detail == api_detail
    # and the page's own reads of the coordinator are audited as reads, like any app's
    assert rows(demo, interaction="read", target="Practitioner/prac-nina/_history/1") or \
        [r for r in rows(demo, interaction="read") if (r.target or "").startswith("Practitioner/prac-nina")]


def test_every_form_needs_its_csrf_token(web, demo):
    sign_in(web, "patient.pat")
    r = web.post("/web/what-matters", data={"text": "Sneaky", "kind": "what-matters", "action": "add"})
    assert r.status_code == 403
    assert "did not come from this service" in r.text and "Traceback" not in r.text
    r = web.post("/web/what-matters", data={"text": "Sneaky", "kind": "what-matters", "csrf": "wrong"})
    assert r.status_code == 403
    assert not [x for x in rows(demo, interaction="create") if (x.target or "").startswith("Goal")]
    r = web.post("/web/sign-out", data={"csrf": ""})
    assert r.status_code == 403  # (signing out needs it too: no one can sign you out from another site)


def test_pages_have_a_restrictive_csp_and_plain_errors(web, demo):
    r = web.get("/web/my-care-plan")
    assert r.status_code == 303 and r.headers["location"].startswith("/web/sign-in")
    sign_in(web, "patient.pat")
    r = web.get("/web/my-care-plan")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["cache-control"] == "no-store"
    r = web.get("/web/no-such-page")
    assert r.status_code == 404 and "Page not found" in r.text and "OperationOutcome" not in r.text
    # a professional's page is refused in plain words to a patient
    r = web.get("/web/caseload")
    assert r.status_code in (403, 404) and "OperationOutcome" not in r.text


def test_a_forged_or_expired_sign_in_callback_is_refused_in_plain_words(web):
    r = web.get("/web/callback", params={"code": "x", "state": "y"})
    assert r.status_code == 400 and "Please sign in again" in r.text


def test_an_expiring_access_token_is_refreshed_and_the_old_one_stops_working(web, app, demo):
    sign_in(web, "nurse.nina")
    sealer = app.state.web.sealer
    s = sealer.session(web.cookies.get("sc_session"))
    old_token, old_refresh = s.access_token, s.refresh_token
    assert old_refresh  # (online_access: the pages keep the session alive while it is used)
    s.expires_at = 0  # as if the access token were about to expire
    web.cookies.set("sc_session", sealer.session_cookie(s))
    r = web.get("/web/caseload")
    assert r.status_code == 200 and "Pat Example" in r.text
    renewed = sealer.session(r.cookies.get("sc_session"))
    assert renewed is not None and renewed.access_token != old_token and renewed.refresh_token != old_refresh
    assert renewed.csrf == s.csrf and renewed.subject == "nurse.nina"
    # the refresh token was rotated: replaying the old session cannot refresh again
    s.refresh_token = old_refresh
    web.cookies.set("sc_session", sealer.session_cookie(s))
    r = web.get("/web/caseload")
    assert r.status_code == 303 and r.headers["location"].startswith("/web/sign-in")


def test_sign_in_returns_only_to_our_own_pages(web):
    r = web.get("/web/sign-in", params={"next": "https://evil.example/phish"})
    assert r.status_code == 303
    page = web.get(r.headers["location"])
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    form.update(username="patient.pat", password="sharedcare-demo", action="login")
    r = web.get(web.post("/auth/authorize", data=form).headers["location"])
    assert r.headers["location"] == "/web/my-care-plan"


def test_a_tampered_session_cookie_is_no_session(web, app):
    sign_in(web, "patient.pat")
    value = web.cookies.get("sc_session")
    web.cookies.set("sc_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
    r = web.get("/web/my-care-plan")
    assert r.status_code == 303 and r.headers["location"].startswith("/web/sign-in")


def test_a_section_that_is_not_in_the_form_is_refused_and_nothing_is_saved(web, app, demo):
    sign_in(web, "nurse.nina")
    csrf = app.state.web.sealer.session(web.cookies.get("sc_session")).csrf
    r = web.post("/web/record/pat-pat/start-assessment", data={"csrf": csrf})
    assert r.status_code == 303
    url = r.headers["location"]
    before = [x.seq for x in rows(demo, interaction="operation:save-answers")]
    r = web.post(f"{url}/save", data={"csrf": csrf, "section": "no-such-section", "version": "1",
                                      "about-me.preferred-name": "Pat"})
    assert r.status_code == 400 and "could not be read" in r.text
    assert [x.seq for x in rows(demo, interaction="operation:save-answers")] == before
    r = web.post(f"{url}/save", data={"csrf": csrf, "section": "about-me", "version": "1",
                                      "about-me.preferred-name": "Pat"})
    assert r.status_code == 303 and "saved=1" in r.headers["location"]
    assert len(rows(demo, interaction="operation:save-answers")) == len(before) + 1
