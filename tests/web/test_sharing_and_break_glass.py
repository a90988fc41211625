"""Objections and emergency access, across browsers: the person objects to an organisation and its professional
can no longer see her record, she withdraws and he can again; a nurse with no care relationship breaks the glass
with a reason, the IG lead reviews it, the person sees it with its reason."""

from __future__ import annotations

from pathlib import Path

from tests.web.conftest import audit_page, sign_in, text

REASON = "Admitted unconscious to A&E, need her medicines list"


def test_objection_to_an_organisation_then_withdrawn(new_page):
    sam = new_page(mobile=False)
    sign_in(sam, "social.sam")
    audit_page(sam, "staff-caseload")
    assert "Pat Example" in text(sam)
    sam.click("text=Pat Example")
    audit_page(sam, "staff-record")
    assert "Staying well at home" in text(sam)

    pat = new_page()
    sign_in(pat, "patient.pat")
    pat.goto("/web/sharing")
    audit_page(pat, "patient-sharing")
    assert "National Data Opt-out" in text(pat) and "does not stop" in text(pat)
    pat.click("button[value=record]")  # nothing chosen: a plain error
    assert "Choose who you do not want your record shared with" in text(pat)
    pat.check("#scope-organisation")
    pat.select_option("#organisation", label="Westshire County Council Adult Social Care")
    pat.click("button[value=record]")
    assert "Your choice has been recorded" in text(pat)
    assert "Do not share my record with Westshire County Council Adult Social Care" in text(pat)
    audit_page(pat, "patient-sharing-recorded")

    sam.goto("/web/record/pat-pat")
    body = text(sam)
    assert "Staying well at home" not in body
    assert "not shared with" in body
    audit_page(sam, "staff-record-withheld")

    card = pat.locator(".nhsuk-card", has_text="Do not share my record with Westshire County Council")
    card.locator("button[value=withdraw]").click()
    assert "Your choice has been withdrawn" in text(pat)
    assert "Let Carl Example see my record" in text(pat)  # her other choice stands
    assert "Do not share my record with" not in text(pat)

    sam.goto("/web/record/pat-pat")
    assert "Staying well at home" in text(sam)


def test_break_glass_then_ig_review_then_the_person_sees_it_with_its_reason(new_page):
    wes = new_page(mobile=False)
    sign_in(wes, "ward.wes")
    wes.goto("/web/find?q=943+476+5919")
    assert "could not find a record you may open" in text(wes)
    audit_page(wes, "staff-find-break-glass")
    wes.click("text=Use emergency access")  # no reason: refused in plain words
    assert "Say why you need this record now" in text(wes)
    wes.fill("#reason", REASON)
    wes.click("text=Use emergency access")
    assert "Pat Example" in text(wes) and "943 476 5919" in text(wes)

    iris = new_page(mobile=False)
    sign_in(iris, "ig.iris")
    assert iris.url.endswith("/web/ig/break-glass")
    audit_page(iris, "ig-break-glass-queue")
    body = text(iris)
    assert "Wes Ward" in body and REASON in body
    iris.click("text=Record review")  # nothing chosen
    assert "Choose whether the access was appropriate" in text(iris)
    iris.check("input[value=appropriate]")
    iris.click("text=Record review")
    assert "Your review has been recorded" in text(iris)
    assert "There are no emergency accesses here" in text(iris)
    iris.goto("/web/ig/break-glass?status=reviewed")
    assert "appropriate" in text(iris) and "Wes Ward" in text(iris)
    with iris.expect_download() as dl:
        iris.click("text=Download as CSV")
    content = Path(dl.value.path()).read_text()
    assert REASON in content and "appropriate" in content

    pat = new_page()
    sign_in(pat, "patient.pat")
    pat.goto("/web/who-has-looked")
    audit_page(pat, "patient-who-has-looked")
    body = text(pat)
    assert "Emergency access" in body and REASON in body
    assert "Wes Ward, Nurse" in body and "Westshire Hospitals NHS Foundation Trust" in body
    assert "search-type" not in body and "BTG" not in body  # no raw codes
    assert "Pat Example" not in body  # her own visits are not "someone looking"
    assert "Used emergency access to open your details" in body and "Searched your details" in body


def test_ig_audit_search_and_reports(new_page):
    iris = new_page(mobile=False)
    sign_in(iris, "ig.iris")
    iris.goto("/web/ig/audit?from=not-a-date")
    assert "Enter a date like" in text(iris)
    iris.goto("/web/ig/audit?user=ig.iris")
    audit_page(iris, "ig-audit-search")
    assert "events" in text(iris)
    with iris.expect_download() as dl:
        iris.click("text=Download as CSV")
    assert "ig.iris" in Path(dl.value.path()).read_text()
    iris.goto("/web/ig/audit?patient=pat-pat&outcome=0&purpose=TREAT")
    assert "events" in text(iris)
    iris.goto("/web/ig/objections")
    audit_page(iris, "ig-objections")
    assert "Objections and consents in force" in text(iris)
    iris.goto("/web/ig/denials")
    audit_page(iris, "ig-denials")
    assert "Refused accesses" in text(iris)
