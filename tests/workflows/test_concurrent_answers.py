"""Several professionals answering one assessment at once: different sections merge, the same answer
changed by two people is a 412 naming the item, and nothing is ever silently overwritten."""

from __future__ import annotations

import threading
from typing import Any

from tests.workflows.support import (
    LEVEL,
    ans,
    author_of,
    care_act_section,
    coding,
    find_item,
    grp,
    health_section,
    params,
    save_body,
    version,
)


def start(users: dict[str, Any]) -> str:
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    return f"/fhir/QuestionnaireResponse/{r.json()['id']}"


def falls(level: str) -> dict[str, Any]:
    return grp("health", grp("health.falls", ans("health.falls.need", coding(LEVEL, level))))


def concurrently(*calls: Any) -> list[Any]:
    """Run the calls in threads released together; their responses in the same order."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int, call: Any) -> None:
        barrier.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_saves_of_different_sections_both_succeed(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    r1, r2 = concurrently(
        lambda: nina.post(f"{url}/$save-answers", json=save_body(1, health_section(), sections=("health",))),
        lambda: sam.post(f"{url}/$save-answers", json=save_body(1, care_act_section(), sections=("care-act",))))
    assert (r1.status_code, r2.status_code) == (200, 200), (r1.text, r2.text)
    assert sorted([version(r1), version(r2)]) == [2, 3]
    final = nina.get(url).json()
    assert final["meta"]["versionId"] == "3"
    assert author_of(final, "health.falls.need")["author"] == {"reference": "Practitioner/prac-nina"}
    assert author_of(final, "care-act.nutrition.need")["author"] == {"reference": "Practitioner/prac-sam"}
    assert author_of(final, "about-me.name")["source"] == "prefilled"


def test_concurrent_changes_to_the_same_answer_one_wins_the_other_gets_412(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    r1, r2 = concurrently(lambda: nina.post(f"{url}/$save-answers", json=save_body(1, falls("high"))),
                          lambda: sam.post(f"{url}/$save-answers", json=save_body(1, falls("low"))))
    statuses = sorted([r1.status_code, r2.status_code])
    assert statuses == [200, 412], (r1.text, r2.text)
    won, lost = (r1, r2) if r1.status_code == 200 else (r2, r1)
    assert "health.falls.need" in lost.json()["issue"][0]["diagnostics"]
    final = nina.get(url).json()
    assert final["meta"]["versionId"] == "2"
    assert find_item(final, "health.falls.need")["answer"] == find_item(won.json(), "health.falls.need")["answer"]


def test_same_item_conflict_is_412_naming_the_item_and_who_changed_it(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    assert nina.post(f"{url}/$save-answers", json=save_body(1, falls("moderate"))).status_code == 200
    r = sam.post(f"{url}/$save-answers", json=save_body(1, falls("severe")))  # sam still works from version 1
    assert r.status_code == 412, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["code"] == "conflict"
    assert "health.falls.need" in issue["diagnostics"]
    assert "Practitioner/prac-nina" in issue["diagnostics"] and "Organization/org-community-trust" in issue["diagnostics"]
    assert issue["expression"] == ["QuestionnaireResponse.item.where(linkId='health.falls.need')"]
    current = nina.get(url).json()
    assert current["meta"]["versionId"] == "2"  # nothing written
    assert find_item(current, "health.falls.need")["answer"][0]["valueCoding"]["code"] == "moderate"
    # re-read and re-apply: now it saves
    again = sam.post(f"{url}/$save-answers", json=save_body(2, falls("severe")))
    assert again.status_code == 200, again.text
    assert author_of(again.json(), "health.falls.need")["author"] == {"reference": "Practitioner/prac-sam"}


def test_a_conflict_saves_nothing_of_the_same_request(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    assert nina.post(f"{url}/$save-answers", json=save_body(1, falls("moderate"))).status_code == 200
    both = save_body(1, falls("severe"), grp("about-me", ans("about-me.what-matters", "My garden")))
    assert sam.post(f"{url}/$save-answers", json=both).status_code == 412
    current = nina.get(url).json()
    try:
        find_item(current, "about-me.what-matters")
        raise AssertionError("a refused save must write nothing")
    except KeyError:
        pass


def test_changing_to_the_same_value_is_not_a_conflict(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    assert nina.post(f"{url}/$save-answers", json=save_body(1, falls("high"))).status_code == 200
    r = sam.post(f"{url}/$save-answers", json=save_body(1, falls("high")))
    assert r.status_code == 200, r.text
    assert author_of(r.json(), "health.falls.need")["author"] == {"reference": "Practitioner/prac-nina"}


def test_resending_a_stale_section_does_not_undo_someone_elses_answer(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    v1 = nina.get(url).json()
    assert nina.post(f"{url}/$save-answers", json=save_body(1, falls("high"))).status_code == 200
    # sam sends back the about-me section exactly as he read it at version 1, plus one new answer
    about = next(i for i in v1["item"] if i["linkId"] == "about-me")
    about = {**about, "item": [*about["item"], ans("about-me.what-matters", "My garden")]}
    r = sam.post(f"{url}/$save-answers", json=save_body(1, about, sections=("about-me",)))
    assert r.status_code == 200, r.text
    merged = r.json()
    assert find_item(merged, "health.falls.need")["answer"][0]["valueCoding"]["code"] == "high"
    assert author_of(merged, "about-me.what-matters")["author"] == {"reference": "Practitioner/prac-sam"}
    assert author_of(merged, "about-me.name")["source"] == "prefilled"


def test_a_section_save_clears_the_answers_it_leaves_out(users):
    url = start(users)
    nina = users["nina"]
    assert nina.post(f"{url}/$save-answers", json=save_body(1, health_section())).status_code == 200
    smaller = grp("health", grp("health.falls", ans("health.falls.need", coding(LEVEL, "low"))))
    r = nina.post(f"{url}/$save-answers", json=save_body(2, smaller, sections=("health",)))
    assert r.status_code == 200, r.text
    health = find_item(r.json(), "health")
    assert [i["linkId"] for i in health["item"]] == ["health.falls"]
    assert [i["linkId"] for i in health["item"][0]["item"]] == ["health.falls.need"]


def test_clearing_an_answer_someone_else_changed_is_a_conflict(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    assert nina.post(f"{url}/$save-answers", json=save_body(1, falls("low"))).status_code == 200
    assert nina.post(f"{url}/$save-answers", json=save_body(2, falls("high"))).status_code == 200
    # sam read version 2 (low) and clears the health section
    r = sam.post(f"{url}/$save-answers", json=save_body(2, sections=("health",)))
    assert r.status_code == 412, r.text
    assert "health.falls.need" in r.json()["issue"][0]["diagnostics"]


def test_save_needs_the_version_it_is_based_on(users):
    url = start(users)
    body = params({"name": "response", "resource": {"resourceType": "QuestionnaireResponse", "item": [falls("low")]}})
    r = users["nina"].post(f"{url}/$save-answers", json=body)
    assert r.status_code == 428
    assert "baseVersion" in r.json()["issue"][0]["diagnostics"]
    r = users["nina"].post(f"{url}/$save-answers", json=body, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(9, falls("low")))
    assert r.status_code == 412
    assert "no version 9" in r.json()["issue"][0]["diagnostics"]


def test_plain_put_with_a_stale_etag_is_412(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    current = nina.get(url).json()
    assert nina.post(f"{url}/$save-answers", json=save_body(1, falls("low"))).status_code == 200
    stale = {k: v for k, v in current.items() if k != "meta"}
    r = sam.put(url, json=stale, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412
    assert find_item(nina.get(url).json(), "health.falls.need")["answer"][0]["valueCoding"]["code"] == "low"


def test_completing_a_version_someone_has_since_changed_is_412(users):
    url = start(users)
    nina, sam = users["nina"], users["sam"]
    assert sam.post(f"{url}/$save-answers", json=save_body(1, care_act_section())).status_code == 200
    r = nina.post(f"{url}/$complete", headers={"If-Match": 'W/"1"'})  # nina read version 1
    assert r.status_code == 412, r.text
    assert "version 1" in r.json()["issue"][0]["diagnostics"]
    assert nina.get(url).json()["status"] == "in-progress"
