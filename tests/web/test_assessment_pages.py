"""The joint assessment in two browsers at once: a nurse and a social worker each save their own sections, a
conflict on the same answer shows both values, pre-filled answers are marked, enableWhen shows and hides
questions, the assessment is completed, the care plan generated, edited and agreed, and the person sees it."""

from __future__ import annotations

import re

from tests.web.conftest import audit_page, sign_in, text

# Fill every visible, required, empty question of the section (first option, "Yes", a number, a date, words).
FILL_REQUIRED = """() => {
  const form = document.querySelector("form[action$='/save']");
  for (let pass = 0; pass < 6; pass++) {
    form.querySelectorAll(".app-q").forEach(q => {
      if (q.closest("[hidden]") || !q.querySelector(".app-required")) return;
      const inputs = [...q.querySelectorAll("input, select, textarea")];
      if (q.closest(".nhsuk-card") && q.closest(".nhsuk-card").querySelector("h3")?.textContent.includes("Add another")) return;
      if (inputs.some(i => (i.type === "radio" || i.type === "checkbox") ? i.checked : i.value !== "")) return;
      const el = inputs[0];
      if (el.type === "radio" || el.type === "checkbox") el.checked = true;
      else if (el.tagName === "SELECT") el.selectedIndex = 1;
      else if (el.type === "date") el.value = "2026-12-01";
      else if (el.inputMode === "numeric" || el.inputMode === "decimal") el.value = "3";
      else el.value = "Talked it through with the person";
      el.dispatchEvent(new Event("change", {bubbles: true}));
    });
  }
}"""


def open_assessment(page) -> str:  # type: ignore[no-untyped-def]
    page.goto("/web/record/pat-pat")
    page.click("text=Start or continue the joint assessment")
    page.wait_for_url(re.compile(r".*/web/assessment/[^/?]+.*"))
    return page.url.split("?")[0]


def fill_section(page, url: str, section: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}?section={section}")
    page.evaluate(FILL_REQUIRED)
    page.click("text=Save this section")
    assert "This section has been saved" in text(page), text(page)[:600]


def test_nurse_and_social_worker_complete_one_assessment_with_a_conflict(new_page):
    nina, sam = new_page(mobile=False), new_page(mobile=False)
    sign_in(nina, "nurse.nina")
    sign_in(sam, "social.sam")
    url = open_assessment(nina)
    assert open_assessment(sam) == url  # one assessment to contribute to

    # pre-filled answers are marked as such
    nina.goto(f"{url}?section=about-me")
    audit_page(nina, "staff-assessment-about-me")
    assert nina.locator(".app-prefilled").count() >= 3
    assert "Pre-filled from the record" in text(nina)
    # a reference answer is chosen from the record's organisations, pre-filled with the GP practice
    assert nina.locator("#about-me-gp-practice option:checked").inner_text() == "Meadow Lane Surgery"

    # both read the same version of about-me; each changes "What I like to be called"
    sam.goto(f"{url}?section=about-me")
    nina.fill("#about-me-preferred-name", "Pat")
    nina.click("text=Save this section")
    assert "This section has been saved" in text(nina)
    sam.fill("#about-me-preferred-name", "Patricia")
    sam.click("text=Save this section")
    body = text(sam)
    assert "Someone else changed the same answer" in body
    assert "What I like to be called" in body
    assert "Your answer: Patricia" in body and "Saved by Nina Nurse (Riverside Community NHS Trust): Pat" in body, body[:1200]
    audit_page(sam, "staff-assessment-conflict")
    # his answer is still in the form; saving again (on the version now saved) replaces hers, deliberately
    assert sam.input_value("#about-me-preferred-name") == "Patricia"
    sam.click("text=Save this section")
    assert "This section has been saved" in text(sam)
    nina.goto(f"{url}?section=about-me")
    assert nina.input_value("#about-me-preferred-name") == "Patricia"

    # enableWhen: the level of need appears only once the outcome is not achieved unaided
    sam.goto(f"{url}?section=care-act")
    audit_page(sam, "staff-assessment-care-act")
    level = sam.locator("[data-when] >> text=Level of need").first
    assert not level.is_visible()
    sam.check("#care-act-nutrition-need-2")  # "Unable to achieve without assistance"
    assert level.is_visible()

    # a wrong kind of answer is refused in plain words, nothing saved
    nina.goto(f"{url}?section=health")
    weight = nina.locator("#health-nutrition-hydration-weight")
    if weight.is_visible():
        weight.fill("sixty")
        nina.click("text=Save this section")
        assert "Enter a number" in text(nina)

    # each fills in their own sections, at the same time, each section saving on its own
    for section in ("about-me", "health", "risks", "sharing"):
        fill_section(nina, url, section)
    for section in ("care-act", "carers", "tec"):
        fill_section(sam, url, section)

    nina.goto(f"{url}?section=about-me")
    nina.click("text=Complete the assessment")
    body = text(nina)
    assert "The assessment is complete" in body, body[:1500]
    nina.click("text=Generate the care plan")
    nina.wait_for_url(re.compile(r".*/web/careplan/.*"))
    audit_page(nina, "staff-careplan")
    assert "Draft: not agreed yet" in text(nina)
    nina.fill("#review", "2027-02-01")
    nina.fill("textarea[name^=what-] >> nth=-1", "Weekly visit to check on how the new routine is going")
    nina.select_option("select[name^=org-] >> nth=-1", label="Riverside Community NHS Trust")
    nina.fill("input[name^=due-] >> nth=-1", "2027-01-15")
    nina.click("text=Save the plan")
    assert "The plan has been saved" in text(nina)
    nina.click("text=Record that the person agrees the plan")
    assert "The plan has been agreed" in text(nina)

    pat = new_page()
    sign_in(pat, "patient.pat")
    body = text(pat)
    assert "Weekly visit to check on how the new routine is going" in body
    assert "1 February 2027" in body  # the review date, from the plan itself
    assert "2026-" not in body  # no raw dates, and no stale review date from the draft's description
    assert ": needs met" not in body and "linkId" not in body
