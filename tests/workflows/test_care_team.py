"""The person's care team, across organisations, maintained through the API: members, their roles and
organisations, the one lead (care coordinator), and what joining the team lets a professional do."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.support import (
    ans,
    author_of,
    care_team,
    finished_assessment,
    grp,
    op_params,
    provenance_for,
    ref,
    save_body,
    summary,
)

SNOMED = "http://snomed.info/sct"
CARE_COORDINATOR = {"system": SNOMED, "code": "768820003", "display": "Care coordinator"}
GP_ROLE = {"system": SNOMED, "code": "62247001", "display": "General practitioner"}
TEAM = "/fhir/CareTeam/careteam-pat"


def diagnostics(r: Any) -> str:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i["diagnostics"] for i in body["issue"])


def participant(team: dict[str, Any], member: str) -> dict[str, Any]:
    return next(p for p in team["participant"] if p["member"]["reference"] == member)


def lead_members(team: dict[str, Any]) -> list[str]:
    return [p["member"]["reference"] for p in team["participant"]
            if any(c.get("code") == "768820003" for r in p.get("role", []) for c in r["coding"])]


def test_add_a_member_with_their_role_and_organisation(users):
    r = users["cara"].post(f"{TEAM}/$add-member", json=op_params(
        member=ref("Practitioner/prac-gary"), role=GP_ROLE, reason="Pat's GP joins the team"))
    assert r.status_code == 200, r.text
    team = r.json()
    assert team["meta"]["versionId"] == "2"
    gary = participant(team, "Practitioner/prac-gary")
    assert gary["onBehalfOf"] == {"reference": "Organization/org-gp-practice"}  # from his PractitionerRole
    assert gary["role"] == [{"coding": [GP_ROLE]}]
    assert gary["period"]["start"]
    # everyone else is still there, and the team's earlier version is kept
    assert {p["member"]["reference"] for p in team["participant"]} == {
        "Practitioner/prac-nina", "Practitioner/prac-sam", "Practitioner/prac-cara", "Practitioner/prac-gary"}
    assert len(users["cara"].get(f"{TEAM}/_history/1").json()["participant"]) == 3
    trail = provenance_for(users["ada"], "CareTeam/careteam-pat")
    assert summary(trail[-1]) == ("2", "add-member", "Practitioner/prac-cara", "Organization/org-community-trust")
    assert trail[-1]["reason"][0]["text"] == "Pat's GP joins the team"


def test_adding_someone_already_in_the_team_updates_their_entry(users):
    body = op_params(member=ref("Practitioner/prac-sam"), role={"coding": [GP_ROLE]},
                     onBehalfOf=ref("Organization/org-council-asc"))
    r = users["cara"].post(f"{TEAM}/$add-member", json=body)
    assert r.status_code == 200, r.text
    team = r.json()
    assert [p["member"]["reference"] for p in team["participant"]].count("Practitioner/prac-sam") == 1
    assert participant(team, "Practitioner/prac-sam")["role"] == [{"coding": [GP_ROLE]}]


def test_the_lead_moves_and_there_is_only_ever_one(users):
    r = users["cara"].post(f"{TEAM}/$add-member", json=op_params(member=ref("Practitioner/prac-nina"), lead=True))
    assert r.status_code == 200, r.text
    team = r.json()
    assert lead_members(team) == ["Practitioner/prac-nina"]
    assert "role" not in participant(team, "Practitioner/prac-cara")  # cara is no longer the lead
    # giving the care coordinator role is the same as lead=true
    r = users["nina"].post(f"{TEAM}/$add-member", json=op_params(member=ref("Practitioner/prac-sam"),
                                                                 role=CARE_COORDINATOR))
    assert r.status_code == 200, r.text
    assert lead_members(r.json()) == ["Practitioner/prac-sam"]
    # lead=false takes the role away
    r = users["sam"].post(f"{TEAM}/$add-member", json=op_params(member=ref("Practitioner/prac-sam"), lead=False))
    assert r.status_code == 200, r.text
    assert lead_members(r.json()) == []
    # a plain PUT cannot give the team two leads
    team = {k: v for k, v in r.json().items() if k != "meta"}
    for p in team["participant"][:2]:
        p["role"] = [{"coding": [CARE_COORDINATOR]}]
    r = users["cara"].put(TEAM, json=team)
    assert r.status_code == 422
    assert "one lead" in diagnostics(r) and "Practitioner/prac-nina" in diagnostics(r)


def test_the_lead_becomes_the_accountable_professional_of_the_plan(users):
    r = users["cara"].post(f"{TEAM}/$add-member", json=op_params(member=ref("Practitioner/prac-sam"), lead=True))
    assert r.status_code == 200, r.text
    url = finished_assessment(users)
    r = users["nina"].post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text
    assert r.json()["author"] == {"reference": "Practitioner/prac-sam"}


def test_the_lead_is_a_professional(users):
    r = users["cara"].post(f"{TEAM}/$add-member", json=op_params(member=ref("RelatedPerson/rp-carl"), lead=True))
    assert r.status_code == 400 and "Practitioner" in diagnostics(r)
    r = users["cara"].post(f"{TEAM}/$add-member", json=op_params(member=ref("RelatedPerson/rp-carl"),
                                                                 role={"text": "Son and main carer"}))
    assert r.status_code == 200, r.text  # the person's carer can be in the team, just not lead it


def test_remove_a_member(users):
    r = users["cara"].post(f"{TEAM}/$remove-member", json=op_params(member=ref("Practitioner/prac-sam"),
                                                                    reason="Case closed by the council"))
    assert r.status_code == 200, r.text
    assert "Practitioner/prac-sam" not in [p["member"]["reference"] for p in r.json()["participant"]]
    last = provenance_for(users["ada"], "CareTeam/careteam-pat")[-1]
    assert summary(last) == ("2", "remove-member", "Practitioner/prac-cara", "Organization/org-community-trust")
    assert last["reason"][0]["text"] == "Case closed by the council"
    r = users["cara"].post(f"{TEAM}/$remove-member", json=op_params(member=ref("Practitioner/prac-sam")))
    assert r.status_code == 404 and "not a member" in diagnostics(r)
    assert users["cara"].get(TEAM).json()["meta"]["versionId"] == "2"


def test_bad_member_requests_are_refused_and_change_nothing(users):
    cara = users["cara"]
    cases = [
        (op_params(role=GP_ROLE), 400, "member"),
        (op_params(member=ref("Observation/o1")), 400, "Observation"),
        (op_params(member="prac-gary"), 400, "reference"),
        (op_params(member=ref("Practitioner/nobody")), 422, "Practitioner/nobody"),
        (op_params(member=ref("Practitioner/prac-gary"), onBehalfOf=ref("Patient/pat-pat")), 400, "Organization"),
        (op_params(member=ref("Practitioner/prac-gary"), role="GP"), 400, "role"),
        (op_params(member=ref("Practitioner/prac-gary"), lead="maybe"), 400, "lead"),
    ]
    for body, status, text in cases:
        r = cara.post(f"{TEAM}/$add-member", json=body)
        assert r.status_code == status, (body, r.text)
        assert text in diagnostics(r), (body, r.text)
    assert cara.post("/fhir/CareTeam/no-such-team/$add-member",
                     json=op_params(member=ref("Practitioner/prac-gary"))).status_code == 404
    assert cara.post(f"{TEAM}/$remove-member", json=op_params()).status_code == 400
    assert cara.get(TEAM).json()["meta"]["versionId"] == "1"


def test_joining_the_team_is_what_lets_a_professional_generate_the_plan(users):
    url = finished_assessment(users)
    r = users["gary"].post(f"{url}/$generate-careplan")  # Pat's GP sees her record but is not in her team
    assert r.status_code == 403 and "care team" in diagnostics(r)
    assert users["cara"].post(f"{TEAM}/$add-member", json=op_params(
        member=ref("Practitioner/prac-gary"))).status_code == 200
    r = users["gary"].post(f"{url}/$generate-careplan")
    assert r.status_code == 201, r.text


def test_a_new_team_for_another_person_across_organisations(users):
    team_id = care_team(users, "pat-paula", "prac-nina", "prac-sam", lead="prac-nina")
    team = users["nina"].get(f"/fhir/CareTeam/{team_id}").json()
    assert {(p["member"]["reference"], p["onBehalfOf"]["reference"]) for p in team["participant"]} == {
        ("Practitioner/prac-nina", "Organization/org-community-trust"),
        ("Practitioner/prac-sam", "Organization/org-council-asc")}
    assert lead_members(team) == ["Practitioner/prac-nina"]
    # now in the team, the nurse and the social worker can start and answer Paula's assessment
    r = users["nina"].post("/fhir/Patient/pat-paula/$start-assessment")
    assert r.status_code == 201, r.text
    assert [summary(p)[1] for p in provenance_for(users["ada"], f"CareTeam/{team_id}")] == [
        "CREATE", "add-member", "add-member"]


def test_joining_the_team_creates_the_care_relationship_the_policy_uses(users, demo):
    """Under the care-relationship policy: a ward nurse with no relationship with Pat can neither start, see
    nor answer her assessment, and is refused without learning it exists; once the care coordinator adds him
    to her team, he can."""
    if demo.policy is None:
        pytest.skip("the care-relationship policy is not installed")
    wes = users["wes"]
    url = finished_assessment(users)
    r = users["nina"].post("/fhir/Patient/pat-pat/$start-assessment")
    assert r.status_code == 201, r.text
    open_url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    assert wes.post("/fhir/Patient/pat-pat/$start-assessment").status_code in (403, 404)
    assert wes.get(open_url).status_code in (403, 404)
    r = wes.post(f"{open_url}/$save-answers", json=save_body(1, grp("tec", ans("tec.would-benefit", False))))
    assert r.status_code in (403, 404)
    assert wes.get("/fhir/QuestionnaireResponse/$awaiting-my-sections").json().get("entry", []) == []
    assert wes.post(f"{url}/$generate-careplan").status_code in (403, 404)
    assert users["cara"].post(f"{TEAM}/$add-member", json=op_params(
        member=ref("Practitioner/prac-wes"), onBehalfOf=ref("Organization/org-acute-trust"))).status_code == 200
    assert wes.get(open_url).status_code == 200
    r = wes.post(f"{open_url}/$save-answers", json=save_body(1, grp("tec", ans("tec.notes", "Wants a falls alarm"))))
    assert r.status_code == 200, r.text
    assert author_of(r.json(), "tec.notes")["organisation"] == {"reference": "Organization/org-acute-trust"}
    assert [e["resource"]["id"] for e in wes.get("/fhir/Practitioner/$my-caseload").json()["entry"]] == ["pat-pat"]


def test_membership_ends_with_the_participants_period_or_the_teams_status(users):
    url = finished_assessment(users)
    caseload = "/fhir/Practitioner/$my-caseload"
    team = {k: v for k, v in users["cara"].get(TEAM).json().items() if k != "meta"}
    participant(team, "Practitioner/prac-sam")["period"] = {"start": "2026-01-01", "end": "2026-02-01"}
    assert users["cara"].put(TEAM, json=team).status_code == 200
    assert users["sam"].get(caseload).json().get("entry", []) == []
    assert users["sam"].post(f"{url}/$generate-careplan").status_code in (403, 404)
    # a suspended team is nobody's caseload
    del participant(team, "Practitioner/prac-sam")["period"]
    assert users["cara"].put(TEAM, json={**team, "status": "suspended"}).status_code == 200
    assert users["sam"].get(caseload).json().get("entry", []) == []
    # (suspending it also ended the members' care relationships: Pat's GP practice reactivates it)
    assert users["gary"].put(TEAM, json={**team, "status": "active"}).status_code == 200
    assert [e["resource"]["id"] for e in users["sam"].get(caseload).json()["entry"]] == ["pat-pat"]
