"""Care relationships come and go with the record (care team, episode of care, referrals, registered GP,
the accountable professional of an open plan); secondary use leaves out the National Data Opt-out and never
touches direct care. Both databases."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from tests.policy.support import PAULA_NHS, consent, ids, observation


def _care_team(who, patient: str, *members: str, status: str = "active") -> dict:  # type: ignore[no-untyped-def]
    body = {"resourceType": "CareTeam", "status": status, "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": m}} for m in members]}
    r = who["gary"].post("/fhir/CareTeam", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_joining_and_leaving_a_care_team(who):
    assert who["nina"].get("/fhir/Patient/pat-paula").status_code == 404
    team = _care_team(who, "pat-paula", "Practitioner/prac-nina")
    assert who["nina"].get("/fhir/Patient/pat-paula").status_code == 200
    assert ids(who["nina"].get("/fhir/Patient").json()) == ["pat-pat", "pat-paula"]
    team["status"] = "inactive"
    assert who["gary"].put(f"/fhir/CareTeam/{team['id']}", json=team).status_code == 200
    assert who["nina"].get("/fhir/Patient/pat-paula").status_code == 404
    # a whole organisation as a member
    _care_team(who, "pat-paula", "Organization/org-acute-trust")
    assert who["wes"].get("/fhir/Patient/pat-paula").status_code == 200


def test_an_episode_of_care_gives_the_managing_organisation_a_relationship(who):
    episode = {"resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": "Patient/pat-paula"},
               "managingOrganization": {"reference": "Organization/org-council-asc"},
               "period": {"start": "2026-01-01"}}
    r = who["gary"].post("/fhir/EpisodeOfCare", json=episode)
    assert r.status_code == 201, r.text
    assert who["sam"].get("/fhir/Patient/pat-paula").status_code == 200
    ended = {**r.json(), "status": "finished", "period": {"start": "2026-01-01", "end": "2026-02-01"}}
    assert who["gary"].put(f"/fhir/EpisodeOfCare/{ended['id']}", json=ended).status_code == 200
    assert who["sam"].get("/fhir/Patient/pat-paula").status_code == 404


def test_a_referral_is_visible_to_its_recipient_and_accepting_it_opens_the_record(who):
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": "Patient/pat-paula"}, "owner": {"reference": "Organization/org-acute-trust"},
            "description": "Discharge to assess: home visit"}
    t = who["gary"].post("/fhir/Task", json=task).json()
    assert who["wes"].get(f"/fhir/Task/{t['id']}").status_code == 200  # addressed to the hospital
    assert ids(who["wes"].get("/fhir/Task?status=requested").json()) == [t["id"]]
    assert who["wes"].get("/fhir/Patient/pat-paula").status_code == 404  # not yet accepted
    t["status"] = "accepted"
    assert who["wes"].put(f"/fhir/Task/{t['id']}", json=t).status_code == 200
    assert who["wes"].get("/fhir/Patient/pat-paula").status_code == 200
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/pat-paula"}, "performer": [{"reference": "Organization/org-council-asc"}]}
    assert who["gary"].post("/fhir/ServiceRequest", json=sr).status_code == 201
    assert who["sam"].get("/fhir/Patient/pat-paula").status_code == 200


def test_registering_a_person_gives_the_practice_a_relationship(who):
    new = {"resourceType": "Patient", "name": [{"family": "Newcomer"}],
           "generalPractitioner": [{"reference": "Organization/org-gp-practice"}]}
    r = who["gp"].post("/fhir/Patient", json=new)
    assert r.status_code == 201, r.text
    assert who["gary"].get(f"/fhir/Patient/{r.json()['id']}").status_code == 200
    assert who["nina"].get(f"/fhir/Patient/{r.json()['id']}").status_code == 404
    obs = who["gp"].post("/fhir/Observation", json=observation(r.json()["id"], "New patient check"))
    assert obs.status_code == 201


def test_the_relationship_rows_can_be_rebuilt(who, demo, settings, tmp_path):
    _care_team(who, "pat-paula", "Practitioner/prac-nina")
    from sqlalchemy import delete

    from service.policy import config, relationships
    from service.policy.tables import care_relationship

    with demo.db.write() as conn:
        conn.execute(delete(care_relationship))
    assert who["nina"].get("/fhir/Patient/pat-paula").status_code == 404
    with demo.db.write() as conn:
        assert relationships.rebuild(conn, config.load()) >= 5
    assert who["nina"].get("/fhir/Patient/pat-paula").status_code == 200


def test_secondary_use_leaves_out_the_opt_out_and_direct_care_does_not(who, demo, policy):
    research = {"X-Purpose-Of-Use": "HRESCH"}
    assert who["gp"].get("/fhir/Patient", headers=research).status_code == 403  # not a research client
    assert who["nina"].get("/fhir/Patient", headers=research).status_code == 403
    policy.settings = replace(policy.settings, secondary_use_clients=frozenset({"gp-system"}))
    assert ids(who["gp"].get("/fhir/Patient", headers=research).json()) == ["pat-pat", "pat-paula"]
    assert who["gp"].post("/fhir/Observation", json=observation("pat-pat", "x"), headers=research).status_code == 403
    # Paula is on the National Data Opt-out list (imported with the CLI)
    from service.policy import optout

    with demo.db.write() as conn:
        optout.import_numbers(conn, [PAULA_NHS], source="test")
    assert ids(who["gp"].get("/fhir/Patient", headers=research).json()) == ["pat-pat"]
    assert who["gp"].get("/fhir/Patient/pat-paula", headers=research).status_code == 404
    assert ids(who["gp"].get("/fhir/Patient").json()) == ["pat-pat", "pat-paula"]  # direct care: unchanged
    # Pat records her opt-out as a consent: research loses her too, her care does not
    body = consent("pat-pat", {"type": "deny", "purpose": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}, scope="research")
    assert who["pat"].post("/fhir/Consent", json=body).status_code == 201
    assert ids(who["gp"].get("/fhir/Patient", headers=research).json()) == []
    assert who["nina"].get("/fhir/Patient/pat-pat").status_code == 200


def test_unknown_and_mixed_purposes_are_refused(who):
    r = who["nina"].get("/fhir/Patient", headers={"X-Purpose-Of-Use": "HMARKT"})
    assert r.status_code == 400 and "HMARKT" in r.json()["issue"][0]["diagnostics"]
    r = who["nina"].get("/fhir/Patient", headers={"X-Purpose-Of-Use": "TREAT,HRESCH"})
    assert r.status_code in (400, 403)


def test_the_optout_command_imports_a_list(settings, demo, tmp_path):
    f = tmp_path / "optouts.txt"
    f.write_text(f"# national list\n{PAULA_NHS}\n")
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_VAR_DIR": str(settings.var_dir),
           "SHAREDCARE_KEYS_DIR": str(settings.keys_dir), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "service.cli", "optout"]
    r = subprocess.run([*run, "import", str(f)], env=env, capture_output=True, text=True, check=False, cwd=".")
    assert r.returncode == 0, r.stderr
    assert subprocess.run([*run, "count"], env=env, capture_output=True, text=True, check=False).stdout.strip() == "1"
    f.write_text("1234567890\n")
    r = subprocess.run([*run, "import", str(f)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 1 and ":1:" in r.stderr
