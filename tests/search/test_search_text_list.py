"""`_text` (narrative), `_content` (the whole resource) and `_list`, on SQLite (FTS5) and PostgreSQL (full-text
search), against a straightforward Python evaluation over the stored population (the oracle), and under the
same access filter as every search: a professional or a patient finds only what they may see, and a List they
may not see is a missing one."""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any
from urllib.parse import quote

import pytest


def post(client: Any, res: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = client.post(f"/fhir/{res['resourceType']}", json=res, **kw)
    assert r.status_code == 201, r.text
    return r.json()


def walk(client: Any, url: str, **kw: Any) -> set[str]:
    ids: list[str] = []
    while url:
        r = client.get(url, **kw)
        assert r.status_code == 200, (url, r.text)
        body = r.json()
        ids += [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((lk["url"] for lk in body["link"] if lk["relation"] == "next"), "")
    assert len(ids) == len(set(ids))
    return set(ids)


def div(text: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>'}


# -- the oracle: words as a reader would see them -------------------------------------------------------------
def _words(text: str) -> set[str]:
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()
    return set(re.findall(r"[^\W_]+", folded))


def _narrative(r: dict[str, Any]) -> set[str]:
    d = (r.get("text") or {}).get("div", "")
    return _words(html.unescape(re.sub(r"<[^>]*>", " ", d)))


def _content(r: Any) -> set[str]:
    if isinstance(r, str):
        return _words(r)
    if isinstance(r, dict):
        out: set[str] = set()
        for k, v in r.items():
            out |= _words(html.unescape(re.sub(r"<[^>]*>", " ", v))) if k == "div" else _content(v)
        return out
    if isinstance(r, list):
        return set().union(*[_content(v) for v in r]) if r else set()
    return set()


def oracle(resources: list[dict[str, Any]], param: str, value: str) -> set[str]:
    of = _narrative if param == "_text" else _content
    return {r["id"] for r in resources if any(_words(alt) <= of(r) for alt in value.split(","))}


NARRATIVES = ["Patient reports chest pain after exercise", "No chest pain; shortness of breath at night",
              "Émile's follow-up: blood pressure stable", "BLOOD pressure high, review medication",
              "Café visit – patient felt dizzy", "Routine review, nothing to report"]


@pytest.fixture
def population(client):  # type: ignore[no-untyped-def]
    pat = post(client, {"resourceType": "Patient", "name": [{"family": "Textual"}]})
    made = []
    for i in range(12):
        res: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                               "subject": {"reference": f"Patient/{pat['id']}"},
                               "code": {"text": ["heart rate", "weight", "pressure reading"][i % 3]},
                               "note": [{"text": ["dizzy spells", "résumé attached", "self-reported"][i % 3]}]}
        if i % 4 != 3:
            res["text"] = div(NARRATIVES[i % len(NARRATIVES)])
        made.append(post(client, res))
    return made


QUERIES = [("_text", "chest pain"), ("_text", "pain chest"), ("_text", "CHEST"), ("_text", "emile"),
           ("_text", "Émile blood"), ("_text", "blood pressure"), ("_text", "cafe"), ("_text", "dizzy"),
           ("_text", "chest,review"), ("_text", "pressure high"), ("_text", "nothing-to"), ("_text", "absent"),
           ("_content", "dizzy"), ("_content", "resume"), ("_content", "heart"), ("_content", "weight chest"),
           ("_content", "final"), ("_content", "reported self"), ("_content", "pressure,resume"),
           ("_content", "textual")]


def test_text_and_content_match_the_oracle(client, population):  # type: ignore[no-untyped-def]
    for param, value in QUERIES:
        want = oracle(population, param, value)
        got = walk(client, f"/fhir/Observation?{param}={quote(value, safe=',')}&_count=5")
        assert got == want, (param, value, got ^ want)
    # at system level too, and combined with other criteria
    assert walk(client, "/fhir/?_text=chest&_type=Observation") == oracle(population, "_text", "chest")
    both = walk(client, f"/fhir/Observation?_text=pressure&code={quote('weight')}")
    assert both == set()  # (code is a token: 'weight' is a text, not a code)
    assert walk(client, "/fhir/Observation?_text=pressure&code:text=weight") == {
        r["id"] for r in population if "pressure" in _narrative(r) and r["code"]["text"] == "weight"}


def test_text_is_reindexed_on_update_and_gone_on_delete(client, population):  # type: ignore[no-untyped-def]
    target = population[0]
    assert target["id"] in walk(client, "/fhir/Observation?_text=exercise")
    changed = {k: v for k, v in target.items() if k != "meta"}
    changed["text"] = div("Completely different words")
    assert client.put(f"/fhir/Observation/{target['id']}", json=changed).status_code == 200
    assert target["id"] not in walk(client, "/fhir/Observation?_text=exercise")
    assert walk(client, "/fhir/Observation?_text=completely") == {target["id"]}
    assert client.delete(f"/fhir/Observation/{target['id']}").status_code in (200, 204)
    assert walk(client, "/fhir/Observation?_text=completely") == set()


@pytest.mark.parametrize("query,word", [("_text=", "_text"), ("_text=%20-%20", "word"), ("_content=..", "word"),
                                        ("_text:exact=x", "modifier"), ("_list=$current-problems", "functional"),
                                        ("_list=Patient/1", "_list"), ("_list:x=1", "modifier")])
def test_bad_text_and_list_values_name_the_problem(client, query, word):  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/Observation?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and word in r.text


def test_list_finds_what_the_list_names(client, population):  # type: ignore[no-untyped-def]
    pat = population[0]["subject"]["reference"]
    chosen = [population[i]["id"] for i in (1, 4, 7)]
    lst = post(client, {"resourceType": "List", "status": "current", "mode": "working", "subject": {"reference": pat},
                        "entry": [{"item": {"reference": f"Observation/{i}"}} for i in chosen]
                        + [{"item": {"reference": pat}}]})
    assert walk(client, f"/fhir/Observation?_list={lst['id']}") == set(chosen)
    assert walk(client, f"/fhir/Observation?_list=List/{lst['id']}") == set(chosen)
    assert walk(client, f"/fhir/Observation?_list={lst['id']}&_text=pressure") == set(chosen) & oracle(
        population, "_text", "pressure")
    assert walk(client, f"/fhir/Patient?_list={lst['id']}") == {pat.split("/")[1]}
    assert walk(client, "/fhir/Observation?_list=no-such-list") == set()
    # a deleted List names nothing
    assert client.delete(f"/fhir/List/{lst['id']}").status_code in (200, 204)
    assert walk(client, f"/fhir/Observation?_list={lst['id']}") == set()


def test_text_content_and_list_are_under_the_access_filter(demo, client, auth_headers):  # type: ignore[no-untyped-def]
    """patient.pat may see her own record only: Paula's matching Observation and Paula's List stay hidden."""
    mine = post(client, {"resourceType": "Observation", "status": "final", "code": {"text": "sleep"},
                         "subject": {"reference": "Patient/pat-pat"}, "text": div("Zebra-striped rash noted")})
    hers = post(client, {"resourceType": "Observation", "status": "final", "code": {"text": "sleep"},
                         "subject": {"reference": "Patient/pat-paula"}, "text": div("Zebra-striped rash noted")})
    her_list = post(client, {"resourceType": "List", "status": "current", "mode": "working",
                             "subject": {"reference": "Patient/pat-paula"},
                             "entry": [{"item": {"reference": f"Observation/{mine['id']}"}}]})
    assert walk(client, "/fhir/Observation?_text=zebra") == {mine["id"], hers["id"]}  # (the administrator)
    pat = auth_headers("patient.pat", patient="pat-pat", scope="patient/*.rs")
    assert walk(client, "/fhir/Observation?_text=zebra", headers=pat) == {mine["id"]}
    assert walk(client, "/fhir/Observation?_content=zebra%20rash", headers=pat) == {mine["id"]}
    r = client.get("/fhir/Observation?_text=zebra&_summary=count", headers=pat)
    assert r.status_code == 200 and r.json()["total"] == 1  # the count does not betray Paula's
    # her List names my Observation, but I may not see her List: as if it did not exist
    assert walk(client, f"/fhir/Observation?_list={her_list['id']}") == {mine["id"]}
    assert walk(client, f"/fhir/Observation?_list={her_list['id']}", headers=pat) == set()


@pytest.mark.parametrize("column,index", [("narrative", "ix_sp_text_narrative"), ("content", "ix_sp_text_content")])
def test_full_text_condition_can_use_the_gin_index_on_postgresql(services, backend, column, index):  # type: ignore[no-untyped-def]
    """The condition search builds is the indexed expression (the planner may prefer another path on a small
    table; with nothing else to go by it takes the GIN index)."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL plans (SQLite: an FTS5 MATCH is the FTS index by construction)")
    from sqlalchemy import select, text
    from sqlalchemy.dialects import postgresql

    from service.search.fulltext import TextMatch
    from service.search.tables import sp_text

    stmt = select(sp_text.c.res_id).where(TextMatch(sp_text, column, ["chest", "pain"]))
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with services.db.write() as conn:  # (a transaction, so that SET LOCAL holds)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
    assert index in plan, plan
