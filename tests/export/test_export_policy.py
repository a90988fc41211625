"""What an export holds, checked against the database: direct care covers the people the client cares for, less
what their objections withhold; research leaves out the National Data Opt-out and research objections. Patient
and Group level, `_type`, `_since` and `_typeFilter`. Both databases."""

from __future__ import annotations

from dataclasses import replace

import orjson
from sqlalchemy import select

from service.storage.tables import resource as R
from tests.export.support import GP, download, ids, kick_off, manifest, run_worker, seed

RESEARCH = {"X-Purpose-Of-Use": "HRESCH"}


def _export(who, services, path: str, headers: dict | None = None) -> dict:  # type: ignore[no-untyped-def]
    url = kick_off(who, path, headers=headers or {})
    assert run_worker(services) == ["done"]
    return download(who, manifest(who, url))


def _stored(services, rtype: str, wanted: list[str]) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with services.db.read() as conn:
        rows = conn.execute(select(R.c.res_id, R.c.content).where(R.c.res_type == rtype, R.c.res_id.in_(wanted)))
        return {r.res_id: orjson.loads(r.content) for r in rows}


def _expected_direct_care(pop) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """(patients, observations) gp-system may see: everyone registered with its practice; of the people who
    object to all sharing, only what the practice wrote itself; and what the practice wrote about anyone (an
    organisation always sees its own records)."""
    cared = pop.in_care + pop.objecting + pop.opted_out + pop.research_objection
    obs = [o for p, written in pop.observations.items() for o, org in written
           if org == GP or (p in cared and p not in pop.objecting)]
    return sorted(cared + ["pat-pat", "pat-paula"]), sorted(obs)


def test_direct_care_export_covers_the_clients_patients_less_objections(who, demo):
    pop = seed(who["ada"], demo)
    found = _export(who["gp"], demo, "/fhir/Patient/$export?_type=Patient,Observation")
    patients, observations = _expected_direct_care(pop)
    # (the Patient resources of people who object were written by someone else: withheld too)
    assert ids(found, "Patient") == sorted(set(patients) - set(pop.objecting))
    assert ids(found, "Observation") == observations
    # contents are the stored resources, byte for byte as JSON
    stored = _stored(demo, "Observation", observations)
    assert {o["id"]: o for o in found["Observation"]} == stored
    # and the same as the client's own searches through the API
    searched = who["gp"].get("/fhir/Observation?_count=1000").json()
    assert sorted(e["resource"]["id"] for e in searched.get("entry", []) if e["search"]["mode"] == "match") \
        == observations


def test_research_export_leaves_out_the_opt_out_and_research_objections(who, demo, policy):
    pop = seed(who["ada"], demo)
    assert who["gp"].get("/fhir/$export", headers={"Prefer": "respond-async", **RESEARCH}).status_code == 403
    policy.settings = replace(policy.settings, secondary_use_clients=frozenset({"gp-system"}))
    found = _export(who["gp"], demo, "/fhir/$export?_type=Patient,Observation", RESEARCH)
    # (an objection to all sharing, with no purpose named, refuses research too)
    excluded = set(pop.opted_out + pop.research_objection + pop.objecting)
    everyone = pop.in_care + pop.not_in_care + pop.objecting + pop.opted_out + pop.research_objection
    assert set(ids(found, "Patient")) & set(everyone) == set(everyone) - excluded  # no care relationship needed
    expected_obs = sorted(o for p in everyone if p not in excluded for o, _ in pop.observations[p])
    assert [o for o in ids(found, "Observation") if o in {x for p in everyone for x, _ in pop.observations[p]}] \
        == expected_obs
    # direct care for the same client is unchanged by the opt-out
    direct = _export(who["gp"], demo, "/fhir/Patient/$export?_type=Patient")
    assert set(pop.opted_out + pop.research_objection) <= set(ids(direct, "Patient"))


def test_type_filter_and_since_are_searches(who, demo):
    pop = seed(who["ada"], demo, n=2)
    mine = [o for p in pop.in_care for o, org in pop.observations[p] if org == GP]
    found = _export(who["gp"], demo, "/fhir/Patient/$export?_type=Observation,Patient"
                    f"&_typeFilter=Patient?_id={pop.in_care[0]}")
    assert ids(found, "Patient") == [pop.in_care[0]]
    assert set(mine) <= set(ids(found, "Observation"))
    # two filters on one type are ORed, each resource once
    found = _export(who["gp"], demo, f"/fhir/Patient/$export?_type=Patient&_typeFilter=Patient?_id={pop.in_care[0]},"
                    f"Patient?_id={pop.in_care[0]},{pop.in_care[1]}")
    assert ids(found, "Patient") == sorted(pop.in_care[:2])
    # _since: only what changed since (inclusive)
    r = who["ada"].get(f"/fhir/Patient/{pop.in_care[1]}").json()
    r["name"][0]["given"] = ["Changed"]
    changed = who["ada"].put(f"/fhir/Patient/{pop.in_care[1]}", json=r)
    assert changed.status_code == 200
    mark = changed.json()["meta"]["lastUpdated"]
    found = _export(who["gp"], demo, "/fhir/$export?_type=Patient,Observation&_since=" + mark.replace("+", "%2B"))
    assert ids(found, "Patient") == [pop.in_care[1]] and "Observation" not in found
    assert found["Patient"][0]["name"][0]["given"] == ["Changed"]


def test_group_export_covers_the_members_the_client_may_see(who, demo):
    pop = seed(who["ada"], demo, n=2)
    members = [pop.in_care[0], pop.objecting[0]]
    group = {"resourceType": "Group", "type": "person", "actual": True, "name": "Frailty list",
             "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members]}
    r = who["gp"].post("/fhir/Group", json=group)
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    found = _export(who["gp"], demo, f"/fhir/Group/{gid}/$export?_type=Patient,Observation")
    assert ids(found, "Patient") == [pop.in_care[0]]  # (the objector's Patient resource is not the GP's)
    expected = sorted(o for p in members for o, org in pop.observations[p] if p not in pop.objecting or org == GP)
    assert ids(found, "Observation") == expected
    # a member the client cannot see is not exported (the Group names them; their records stay hidden)
    assert who["gp"].post("/fhir/Group", json={**group, "member": [
        {"entity": {"reference": f"Patient/{pop.not_in_care[0]}"}}]}).status_code == 403
    # another client's view of the Group: hidden as missing
    assert who["nina"].get(f"/fhir/Group/{gid}/$export", headers={"Prefer": "respond-async"}).status_code == 404
