"""Regressions for the "one door" issue: each test is one way a caller could learn of, or change, a record they
may not see, through a path other than a plain read. The answer must be what an id (or a criterion) that matches
nothing gets, and nothing may be stored or changed. Both databases."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.policy.matrix_support import TAG, carries, entry_ids, micros, missing, neutral, pages, shape
from tests.policy.support import NHS, PAT_NHS, actor, consent, ids, observation
from tests.workflows.support import (
    LEVEL,
    As,
    about_me_extra,
    ans,
    author_of,
    care_act_section,
    carers_section,
    coding,
    find_item,
    grp,
    health_section,
    other_sections,
    save_body,
)

LOINC = "http://loinc.org"
SYSTOLIC = (LOINC, "8480-6")  # the code of the hidden Observation
NOTHING = (LOINC, "0000-0")  # a code no Observation has
VITAL_SIGNS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def hidden_obs(who: dict[str, Any], text: str = "BP 182/110") -> dict[str, Any]:
    """An Observation of Pat's (ward.wes has no care relationship with her), written by the administrator."""
    r = who["ada"].post("/fhir/Observation", json={**observation("pat-pat", text, code=SYSTOLIC),
                                                   "identifier": [{"system": TAG, "value": "secret-1"}]})
    assert r.status_code == 201, r.text
    assert who["wes"].get(f"/fhir/Observation/{r.json()['id']}").status_code == 404  # hidden from him, by read
    assert who["nina"].get(f"/fhir/Observation/{r.json()['id']}").status_code == 200  # not from Pat's nurse
    return r.json()


def unchanged(who: dict[str, Any], obs: dict[str, Any]) -> None:
    r = who["ada"].get(f"/fhir/Observation/{obs['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == obs["meta"]["versionId"] and r.json()["valueString"] == obs["valueString"]


def tagged(who: dict[str, Any], value: str) -> int:
    return who["ada"].get(f"/fhir/Observation?identifier={TAG}|{value}&_summary=count").json()["total"]


# a -------------------------------------------------------------------------------------------------------------
def test_a_task_cannot_open_a_record_and_a_task_is_the_persons_data(who):
    task = {"resourceType": "Task", "status": "accepted", "intent": "order", "for": {"reference": "Patient/pat-pat"},
            "owner": {"reference": "Organization/org-acute-trust"}, "description": "Self-referral: let me in",
            "identifier": [{"system": TAG, "value": "task-a"}]}
    r = who["wes"].post("/fhir/Task", json=task)
    assert r.status_code == 403, r.text
    assert r.json()["issue"][0]["code"] in ("forbidden", "security"), r.text
    assert who["ada"].get(f"/fhir/Task?identifier={TAG}|task-a&_summary=count").json()["total"] == 0
    assert who["wes"].get("/fhir/Patient/pat-pat").status_code == 404
    assert who["wes"].get("/fhir/Patient/pat-pat/$everything").status_code == 404
    # a Task for Pat is Pat's data: only those related to her may see it
    mine = {k: v for k, v in task.items() if k != "owner"}
    made = who["ada"].post("/fhir/Task", json={**mine, "status": "requested",
                                               "identifier": [{"system": TAG, "value": "task-b"}]})
    assert made.status_code == 201, made.text
    url = f"/fhir/Task/{made.json()['id']}"
    got = {name: who[name].get(url).status_code for name in ("nina", "gary", "carl", "paula", "wes")}
    assert got == {"nina": 200, "gary": 200, "carl": 200, "paula": 404, "wes": 404}, got
    for name in ("paula", "wes"):
        for query in (f"Task?_id={made.json()['id']}", "Task?patient=Patient/pat-pat", f"Task?identifier={TAG}|task-b"):
            body = who[name].get(f"/fhir/{query}").json()
            assert not ids(body) and body.get("total", 0) == 0, (name, query, body)


# b -------------------------------------------------------------------------------------------------------------
def test_b_provenance_of_an_assessment_is_found_only_by_those_who_may_see_the_assessment(who):
    r = who["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    qr = r.json()["id"]
    queries = [f"/fhir/Provenance?target=QuestionnaireResponse/{qr}", "/fhir/Provenance/_history?_count=1000",
               f"/fhir/QuestionnaireResponse?_id={qr}&_revinclude=Provenance:target",
               "/fhir/Practitioner?_id=prac-nina&_revinclude=Provenance:agent",
               "/fhir/Organization?_id=org-community-trust&_revinclude=Provenance:agent"]
    found = entry_ids(who["ada"].get(queries[0]).json(), "Provenance")
    assert found, "starting an assessment records its Provenance"
    prov = found[0]
    assert prov in entry_ids(who["nina"].get(queries[0]).json(), "Provenance")  # the nurse finds it
    for name in ("wes", "paula"):
        assert who[name].get(f"/fhir/Provenance/{prov}").status_code == 404, name
        for url in queries:
            r = who[name].get(url)
            assert r.status_code in (200, 403), (name, url, r.text)
            assert prov not in r.text, (name, url, r.text)


# c -------------------------------------------------------------------------------------------------------------
def test_c_conditional_delete_is_no_oracle(who):
    obs = hidden_obs(who)
    query = f"patient=pat-pat&code={SYSTOLIC[0]}|{SYSTOLIC[1]}"
    assert entry_ids(who["ada"].get(f"/fhir/Observation?{query}").json()) == [obs["id"]]  # the criteria match it
    hit = who["wes"].delete(f"/fhir/Observation?{query}")
    miss = who["wes"].delete(f"/fhir/Observation?patient=pat-pat&code={NOTHING[0]}|{NOTHING[1]}")
    assert shape(hit) == shape(miss), (hit.status_code, hit.text, miss.status_code, miss.text)
    unchanged(who, obs)


# d -------------------------------------------------------------------------------------------------------------
def test_d_if_none_exist_on_a_hidden_match_creates(who):
    obs = hidden_obs(who)
    body = {**neutral("Observation"), "identifier": [{"system": TAG, "value": "secret-1"}]}
    criteria = {"If-None-Exist": f"identifier={TAG}|secret-1"}
    # the criteria match: someone who may see the match gets it back
    r = who["nina"].post("/fhir/Observation", json=body, headers=criteria)
    assert r.status_code == 200 and r.json()["id"] == obs["id"], r.text
    r = who["wes"].post("/fhir/Observation", json=body, headers=criteria)
    assert r.status_code == 201, r.text
    assert r.json()["id"] != obs["id"] and "count" not in r.text.lower()
    assert tagged(who, "secret-1") == 2
    unchanged(who, obs)


# e -------------------------------------------------------------------------------------------------------------
def test_e_a_conditional_reference_to_a_hidden_record_resolves_to_nothing(who):
    obs = hidden_obs(who)

    def tx(code: tuple[str, str], caller: str) -> Any:
        entry = {**neutral("Observation"), "identifier": [{"system": TAG, "value": "tx"}],
                 "focus": [{"reference": f"Observation?patient=pat-pat&code={code[0]}|{code[1]}"}]}
        return who[caller].post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b6f1f7e-5d59-4a8c-9a57-2f3c1c0e0e01", "resource": entry,
             "request": {"method": "POST", "url": "Observation"}}]})

    hit, miss = tx(SYSTOLIC, "wes"), tx(NOTHING, "wes")
    assert miss.status_code == 412, miss.text
    # the same answer, apart from the caller's own criteria echoed back
    echoed = miss.text.replace(NOTHING[1], SYSTOLIC[1])
    assert (hit.status_code, hit.json()) == (miss.status_code, json.loads(echoed)), (hit.text, miss.text)
    assert tagged(who, "tx") == 0  # nothing stored
    assert obs["id"] not in hit.text
    # the nurse, who may see it, gets the reference resolved
    r = tx(SYSTOLIC, "nina")
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["focus"] == [{"reference": f"Observation/{obs['id']}"}]


# f -------------------------------------------------------------------------------------------------------------
def test_f_history_paging_never_walks_over_hidden_versions(who):
    mine = who["wes"].post("/fhir/Observation", json={**neutral("Observation"), "valueString": "ward fridge 4C"})
    assert mine.status_code == 201, mine.text
    hidden = [hidden_obs(who, f"BP {i}") for i in range(3)]
    updated = {**hidden[0], "valueString": "BP corrected"}
    assert who["ada"].put(f"/fhir/Observation/{hidden[0]['id']}", json=updated).status_code == 200
    assert who["ada"].delete(f"/fhir/Observation/{hidden[1]['id']}").status_code == 204
    secret = {o["id"] for o in hidden}
    times = {micros(e["response"]["lastModified"]) for o in hidden
             for e in who["ada"].get(f"/fhir/Observation/{o['id']}/_history").json()["entry"]}
    got = pages(who["wes"], "/fhir/Observation/_history?_count=1")
    seen = [i for page in got for i in entry_ids(page)]
    assert seen == [mine.json()["id"]], seen
    for n, page in enumerate(got, 1):
        assert not secret & set(entry_ids(page)) and not any(s in str(page) for s in secret), n
        assert page.get("entry") or n == 1, f"page {n} is empty: {page}"
        nexts = [lk["url"] for lk in page.get("link", []) if lk["relation"] == "next"]
        assert not nexts or page.get("entry"), f"page {n} is empty and offers a next page"
        for lk in page.get("link", []):
            assert not carries(lk["url"], times), f"page {n}: {lk['url']} carries a hidden version's time"
    assert len(got) == 1, f"{len(got)} pages for one visible version"


# g -------------------------------------------------------------------------------------------------------------
def test_g_a_hidden_deleted_record_answers_like_a_missing_one(who):
    obs = hidden_obs(who)
    assert who["ada"].delete(f"/fhir/Observation/{obs['id']}").status_code == 204
    assert who["nina"].get(f"/fhir/Observation/{obs['id']}").status_code == 410  # she could see it: it was deleted
    for suffix in ("", "/_history/1", "/_history"):
        hidden = who["wes"].get(f"/fhir/Observation/{obs['id']}{suffix}")
        unknown = who["wes"].get(f"/fhir/Observation/{missing('Observation')}{suffix}")
        assert hidden.status_code == 404, (suffix, hidden.status_code, hidden.text)
        assert shape(hidden, obs["id"]) == shape(unknown, missing("Observation")), suffix


# h -------------------------------------------------------------------------------------------------------------
def test_h_put_and_delete_of_a_hidden_id_answer_like_an_unknown_id(who):
    obs = hidden_obs(who)
    new = missing("Observation")
    body = {k: v for k, v in obs.items() if k != "meta"} | {"valueString": "BP 120/80"}
    hidden = who["wes"].put(f"/fhir/Observation/{obs['id']}", json=body)
    unknown = who["wes"].put(f"/fhir/Observation/{new}", json={**body, "id": new})
    assert hidden.status_code == unknown.status_code == 405, (hidden.text, unknown.text)
    assert shape(hidden, obs["id"]) == shape(unknown, new)
    assert who["ada"].get(f"/fhir/Observation/{new}").status_code == 404  # no update-as-create for him
    hidden = who["wes"].delete(f"/fhir/Observation/{obs['id']}")
    unknown = who["wes"].delete(f"/fhir/Observation/{new}")
    assert hidden.status_code == unknown.status_code == 204, (hidden.text, unknown.text)
    assert "etag" not in hidden.headers
    assert shape(hidden, obs["id"]) == shape(unknown, new)
    unchanged(who, obs)


# i -------------------------------------------------------------------------------------------------------------
def test_i_a_scope_restriction_applies_to_totals(who, client, auth_headers):
    def obs(pid: str, category: str, text: str) -> dict[str, Any]:
        cat = [{"coding": [{"system": VITAL_SIGNS.split("|")[0], "code": category}]}]
        return {**observation(pid, text), "category": cat}

    for pid, category, text in (("pat-pat", "vital-signs", "pulse"), ("pat-pat", "vital-signs", "BP"),
                                ("pat-pat", "laboratory", "HbA1c"), ("pat-paula", "vital-signs", "pulse")):
        assert who["ada"].post("/fhir/Observation", json=obs(pid, category, text)).status_code == 201
    vitals = As(client, auth_headers("nurse.nina", scope=f"user/Observation.rs?category={VITAL_SIGNS}"))
    assert who["nina"].get("/fhir/Observation?_summary=count").json()["total"] == 3  # all of Pat's
    for url in ("/fhir/Observation?_summary=count", "/fhir/Observation?subject=Patient/pat-pat&_summary=count",
                "/fhir/Patient/pat-pat/Observation?_summary=count"):
        r = vitals.get(url)
        assert r.status_code == 200 and r.json()["total"] == 2, (url, r.text)
    body = vitals.get("/fhir/Observation?_total=accurate").json()
    assert body.get("total") == len(ids(body, "Observation")) == 2, body


# j -------------------------------------------------------------------------------------------------------------
def _health_link_ids(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["linkId"]] if str(value.get("linkId", "")).startswith("health.") else []
        return own + [x for v in value.values() for x in _health_link_ids(v)]
    if isinstance(value, list):
        return [x for v in value for x in _health_link_ids(v)]
    return []


def test_j_an_objection_applies_the_same_on_every_path(who):
    url = _finished(who)
    qr = url.rsplit("/", 1)[1]
    before = who["sam"].get(url)
    assert before.status_code == 200 and _health_link_ids(before.json())  # in her care team, he sees it all
    objection = consent("pat-pat", {"type": "permit", "provision": [
        {"type": "deny", "actor": [actor("Organization/org-council-asc")]}]})
    assert who["pat"].post("/fhir/Consent", json=objection).status_code == 201

    def of(resp: Any) -> Any:  # the assessment as this answer shows it, or None
        if resp.status_code != 200:
            return None
        body = resp.json()
        if body.get("resourceType") == "QuestionnaireResponse":
            return body
        found = [e["resource"] for page in [body] for e in page.get("entry", []) if e.get("resource", {}).get("id") == qr]
        return found[0] if found else None

    answers = {"read": who["sam"].get(url), "search": who["sam"].get(f"/fhir/QuestionnaireResponse?_id={qr}"),
               "$my-assessments": who["sam"].get("/fhir/QuestionnaireResponse/$my-assessments?status=all"),
               "$everything": who["sam"].get("/fhir/Patient/pat-pat/$everything?_count=1000")}
    versions = {f"vread {v}": who["sam"].get(f"{url}/_history/{v}") for v in range(1, 5)}
    for path, resp in {**answers, **versions, "history": who["sam"].get(f"{url}/_history")}.items():
        shown = _health_link_ids(resp.json())
        assert not shown and "health.falls" not in resp.text, f"{path} shows the nurse's answers {shown[:5]}"
    views = {path: of(resp) for path, resp in answers.items()}
    read = answers["read"]
    assert read.status_code in (200, 403), read.text
    if read.status_code == 403:
        assert read.json()["issue"][0]["code"] == "suppressed", read.text
    assert all(v == views["read"] for v in views.values()), {p: (answers[p].status_code, v is not None)
                                                              for p, v in views.items()}
    # the nurse (no objection against her trust) still sees everything
    assert _health_link_ids(who["nina"].get(url).json())


def _finished(who: dict[str, Any]) -> str:
    """Pat's joint assessment: social.sam answers the Care Act sections, nurse.nina health and the rest, then
    completes it (as tests/workflows do)."""
    r = who["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    r = who["sam"].post(f"{url}/$save-answers", json=save_body(1, care_act_section(), carers_section()))
    assert r.status_code == 200, r.text
    r = who["nina"].post(f"{url}/$save-answers", json=save_body(2, health_section(), about_me_extra(),
                                                                  *other_sections()))
    assert r.status_code == 200, r.text
    assert who["nina"].post(f"{url}/$complete").status_code == 200
    return url


# k -------------------------------------------------------------------------------------------------------------
def test_k_a_patient_cannot_overwrite_clinical_answers(who):
    r = who["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    mine = grp("about-me", ans("about-me.what-matters", "My cat, my garden and my grandchildren"))
    r = who["pat"].post(f"{url}/$save-answers", json=save_body(1, mine))
    assert r.status_code == 200, r.text  # her own "what matters to me", while it is in progress
    r = who["sam"].post(f"{url}/$save-answers", json=save_body(2, care_act_section(), carers_section()))
    assert r.status_code == 200, r.text
    r = who["nina"].post(f"{url}/$save-answers", json=save_body(3, health_section("moderate"), *other_sections()))
    assert r.status_code == 200, r.text
    assert who["nina"].post(f"{url}/$complete").status_code == 200
    version = int(who["ada"].get(url).json()["meta"]["versionId"])
    falls = grp("health", grp("health.falls", ans("health.falls.need", coding(LEVEL, "none"))))
    r = who["pat"].post(f"{url}/$amend", json=save_body(version, falls, reason="I am fine now"))
    assert r.status_code == 403, r.text
    stored = who["ada"].get(url).json()
    assert find_item(stored, "health.falls.need")["answer"][0]["valueCoding"]["code"] == "moderate"
    assert author_of(stored, "health.falls.need")["author"] == {"reference": "Practitioner/prac-nina"}
    assert stored["meta"]["versionId"] == str(version)
    # her own answers she may amend
    mine = grp("about-me", ans("about-me.what-matters", "Getting back to my allotment"))
    r = who["pat"].post(f"{url}/$amend", json=save_body(version, mine, reason="Things changed"))
    assert r.status_code == 200, r.text
    assert find_item(r.json(), "about-me.what-matters")["answer"] == [{"valueString": "Getting back to my allotment"}]
    assert find_item(r.json(), "health.falls.need")["answer"][0]["valueCoding"]["code"] == "moderate"


# l -------------------------------------------------------------------------------------------------------------
def test_l_a_duplicate_nhs_number_is_refused_without_revealing_the_record(who):
    dup = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": PAT_NHS}],
           "name": [{"given": ["Patricia"], "family": "Example"}], "birthDate": "1944-03-12",
           "managingOrganization": {"reference": "Organization/org-acute-trust"}}
    r = who["wes"].post("/fhir/Patient", json=dup)
    assert r.status_code == 409, r.text
    text = " ".join(i.get("diagnostics", "") for i in r.json()["issue"])
    assert "nhs number" in text.lower() and "access" in text.lower(), text
    pat = who["ada"].get("/fhir/Patient/pat-pat").json()
    for secret in ("pat-pat", pat["address"][0]["postalCode"], pat["address"][0]["line"][0], "Meadow Lane",
                   "org-gp-practice", "A81001", pat["meta"]["lastUpdated"][:10]):
        assert secret not in r.text, secret
    assert not re.search(r"\bPat\b", r.text), r.text
    assert who["ada"].get(f"/fhir/Patient?identifier={NHS}|{PAT_NHS}&_summary=count").json()["total"] == 1
