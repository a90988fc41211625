"""The person's pages in a browser: sign-in with the permissions in plain words, her own plan, what matters to
her reaching the plan, the session cookie's flags, sign-out revoking the session."""

from __future__ import annotations

import re

from tests.web.conftest import audit_page, sign_in, text

RAW = re.compile(r"patient/\*|user/\*|\.cruds|\.rs\b|CarePlan|QuestionnaireResponse|urn:|https?://")


def test_patient_signs_in_and_sees_only_her_own_plan_in_plain_words(new_page):
    page = new_page()
    sign_in(page, "patient.pat", check=True)
    consent_words = page.url  # (signed in: now on her plan)
    assert consent_words.endswith("/web/my-care-plan")
    audit_page(page, "patient-care-plan")
    body = text(page)
    assert "My care plan" in body and "Staying well at home" in body
    assert "My care coordinator" in body and "Nina Nurse" in body and "Riverside Community NHS Trust" in body
    assert "Next review" in body
    assert not RAW.search(body), RAW.search(body)
    assert "Paula" not in page.content()  # another person's record is nowhere on her pages


def test_the_sign_in_screen_names_permissions_in_plain_words(new_page):
    page = new_page()
    page.goto("/web/")
    audit_page(page, "start")
    assert "Sign in" in text(page)
    page.goto("/web/no-such-page")
    audit_page(page, "error-not-found")
    assert "There is no page at this address" in text(page)
    page.goto("/web/sign-in")
    page.wait_for_url(re.compile(r".*/auth/authorize.*"))
    visible = page.inner_text("main")
    assert "See, add to, change and remove from your record" in visible and "sharing choices" in visible
    assert "patient/*" not in visible  # the raw scopes sit behind "Technical details", closed


def test_what_matters_to_me_reaches_her_plan(new_page):
    page = new_page()
    sign_in(page, "patient.pat")
    page.goto("/web/what-matters")
    audit_page(page, "patient-what-matters")
    page.click("button[value=add]")  # empty: a plain error, focusable summary
    assert "Write what matters to you" in text(page)
    audit_page(page, "patient-what-matters-error")
    page.check("#kind-what-matters")
    page.fill("#text", "Getting back to my allotment on Sundays")
    page.click("button[value=add]")
    assert "Saved" in text(page)
    page.check("#kind-outcomes-wanted")
    page.fill("#text", "Walk to the shop for my paper")
    page.click("button[value=add]")
    page.goto("/web/my-care-plan")
    body = text(page)
    assert "Getting back to my allotment on Sundays" in body
    assert "Walk to the shop for my paper" in body
    # change it: the plan shows the new words
    page.goto("/web/what-matters")
    form = page.locator("form", has=page.locator("textarea", has_text="on Sundays"))
    form.locator("textarea").fill("Getting to my allotment twice a week")
    form.locator("button[value=change]").click()
    page.goto("/web/my-care-plan")
    assert "Getting to my allotment twice a week" in text(page)
    assert "on Sundays" not in text(page)


def test_session_cookie_is_httponly_samesite_and_sign_out_ends_it(new_page):
    page = new_page()
    sign_in(page, "patient.pat")
    cookies = {c["name"]: c for c in page.context.cookies()}
    s = cookies["sc_session"]
    assert s["httpOnly"] and s["sameSite"] in ("Lax", "Strict")
    assert "sharedcare-demo" not in s["value"] and "eyJ" not in s["value"]  # sealed: no readable token inside
    stolen = s["value"]
    page.click("text=Sign out")
    assert "You have signed out" in text(page)
    audit_page(page, "signed-out")
    # the old cookie replayed after sign-out: its token was revoked, so no page of the record opens
    page.context.add_cookies([{"name": "sc_session", "value": stolen, "url": page.url}])
    page.goto("/web/my-care-plan")
    assert "Staying well at home" not in page.content()
    assert re.search(r"signed out|Sign in", text(page) + page.content())


def test_the_carer_sees_only_what_was_granted(new_page):
    carl = new_page()
    sign_in(carl, "carer.carl")
    assert carl.url.endswith("/web/my-care-plan")
    audit_page(carl, "carer-care-plan")
    assert "Staying well at home" in text(carl)
    assert "Paula" not in carl.content()
    carl.goto("/web/who-has-looked")  # the person's own access log is hers
    assert "not for your kind of account" in text(carl)
    carl.goto("/web/sharing")
    assert "Record a new choice" not in text(carl) and "Withdraw" not in text(carl)

    pat = new_page()
    sign_in(pat, "patient.pat")
    pat.goto("/web/sharing")
    card = pat.locator(".nhsuk-card", has_text="Let Carl Example see my record")
    card.locator("button[value=withdraw]").click()
    assert "Your choice has been withdrawn" in text(pat)

    carl.goto("/web/my-care-plan")
    assert "Staying well at home" not in carl.content()
