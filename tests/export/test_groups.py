"""Groups: a partner's list of patients, for Group export. Changing the membership is an ordinary audited write,
and its audit row names the people added and removed. Both databases."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from service.audit.tables import audit_log
from tests.export.support import download, ids, kick_off, manifest, run_worker, seed


def _group(members: list[str]) -> dict:
    return {"resourceType": "Group", "type": "person", "actual": True, "name": "Virtual ward",
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members]}


def _people(row) -> set[str]:  # type: ignore[no-untyped-def]
    return {row.patient_id} | set(orjson.loads(row.detail).get("patients", []))


def test_membership_changes_are_audited_with_the_people_involved(who, demo):
    pop = seed(who["ada"], demo, n=3)
    a, b, c = pop.in_care
    r = who["gp"].post("/fhir/Group", json=_group([a, b]))
    assert r.status_code == 201, r.text
    group = r.json()
    group["member"] = [{"entity": {"reference": f"Patient/{p}"}} for p in (b, c)]  # a leaves, c joins
    assert who["gp"].put(f"/fhir/Group/{group['id']}", json=group).status_code == 200
    with demo.db.read() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.target.like(f"Group/{group['id']}%"))
                            .order_by(audit_log.c.seq)).all()
    assert [(r.interaction, r.altid) for r in rows] == [("create", "gp-system"), ("update", "gp-system")]
    assert _people(rows[0]) == {a, b}
    assert _people(rows[1]) == {a, b, c}  # the one removed, the one kept and the one added
    # the export follows the membership at the time it runs
    url = kick_off(who["gp"], f"/fhir/Group/{group['id']}/$export?_type=Patient")
    run_worker(demo)
    assert ids(download(who["gp"], manifest(who["gp"], url)), "Patient") == sorted([b, c])


def test_a_group_export_of_everyone_in_the_compartment(who, demo):
    pop = seed(who["ada"], demo, n=1)
    gid = who["gp"].post("/fhir/Group", json=_group([pop.in_care[0], pop.opted_out[0]])).json()["id"]
    url = kick_off(who["gp"], f"/fhir/Group/{gid}/$export")
    run_worker(demo)
    found = download(who["gp"], manifest(who["gp"], url))
    assert ids(found, "Patient") == sorted([pop.in_care[0], pop.opted_out[0]])
    assert ids(found, "Observation") == sorted(o for p in (pop.in_care[0], pop.opted_out[0])
                                               for o, _ in pop.observations[p])
    assert "Group" in found and ids(found, "Group") == [gid]  # (the Group is in its members' compartment)
    assert "Organization" not in found  # not patient data
