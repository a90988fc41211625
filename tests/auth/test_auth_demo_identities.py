"""The demo identities of the identity issue, as loaded by `sharedcare demo load`: each user is linked to the
FHIR record it stands for (Practitioner and PractitionerRole with the organisation's ODS code and the SDS job
role; Patient; RelatedPerson), the IG lead and the administrator, and the gp-system client of the GP practice.
The links are checked against the records through the API. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_profiles.rules import nhs_number_problem

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
JOB_ROLE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"

STAFF = {  # user: (job role, organisation id)
    "nurse.nina": ("R8001", "org-community-trust"),
    "social.sam": ("R8014", "org-council-asc"),
    "coord.cara": (None, "org-community-trust"),
    "gp.gary": (None, "org-gp-practice"),
    "ward.wes": (None, "org-acute-trust"),
}


def _get(http: Any, ref: str) -> dict[str, Any]:
    r = http.get(f"/fhir/{ref}")
    assert r.status_code == 200, (ref, r.text)
    return r.json()


def _users(services: Any) -> dict[str, Any]:
    from service.auth.identities import list_users

    with services.db.read() as conn:
        return {u.username: u for u in list_users(conn)}


def test_the_four_organisations(demo, client):
    kinds = {}
    for oid in ("org-community-trust", "org-council-asc", "org-gp-practice", "org-acute-trust"):
        org = _get(client, f"Organization/{oid}")
        kinds[oid] = [i["value"] for i in org["identifier"] if i["system"] == ODS]
        assert kinds[oid], oid
    assert "Community" in _get(client, "Organization/org-community-trust")["name"]
    assert "Adult Social Care" in _get(client, "Organization/org-council-asc")["name"]


@pytest.mark.parametrize("username", list(STAFF))
def test_staff_are_linked_to_practitioner_and_role_with_ods_and_job_role(demo, client, username):
    user = _users(demo)[username]
    role, org_id = STAFF[username]
    assert user.kind == "practitioner" and user.demo_only and user.active
    practitioner = _get(client, user.fhir_user)
    assert practitioner["resourceType"] == "Practitioner"
    prole = _get(client, user.practitioner_role)
    assert prole["practitioner"]["reference"] == user.fhir_user
    assert prole["organization"]["reference"] == user.organisation == f"Organization/{org_id}"
    codes = [c["code"] for cc in prole["code"] for c in cc.get("coding", []) if c.get("system") == JOB_ROLE]
    assert codes == [user.role_code]
    if role:
        assert user.role_code == role
    org = _get(client, user.organisation)
    assert user.ods_code in [i["value"] for i in org["identifier"] if i["system"] == ODS]


def test_care_team_of_patient_pat(demo, client):
    team = _get(client, "CareTeam/careteam-pat")
    assert team["subject"]["reference"] == "Patient/pat-pat"
    members = {p["member"]["reference"] for p in team["participant"]}
    users = _users(demo)
    assert {users[u].fhir_user for u in ("nurse.nina", "social.sam", "coord.cara")} <= members
    assert users["ward.wes"].fhir_user not in members


def test_patients_and_the_carer(demo, client):
    users = _users(demo)
    for username, pid in (("patient.pat", "pat-pat"), ("patient.paula", "pat-paula")):
        u = users[username]
        assert u.kind == "patient" and u.patient == pid and u.fhir_user == f"Patient/{pid}"
        patient = _get(client, u.fhir_user)
        nhs = [i["value"] for i in patient["identifier"] if i["system"] == NHS]
        assert len(nhs) == 1 and nhs_number_problem(nhs[0]) is None
        assert patient["generalPractitioner"][0]["reference"] == "Organization/org-gp-practice"
    carl = users["carer.carl"]
    assert carl.kind == "relatedPerson" and carl.patient == "pat-pat"
    rp = _get(client, carl.fhir_user)
    assert rp["resourceType"] == "RelatedPerson" and rp["patient"]["reference"] == "Patient/pat-pat"


def test_ig_lead_and_administrator(demo, client):
    users = _users(demo)
    assert users["ig.iris"].kind == "ig" and "ig-lead" in users["ig.iris"].roles
    assert users["admin.ada"].kind == "admin" and "admin" in users["admin.ada"].roles
    assert _get(client, users["ig.iris"].fhir_user)["resourceType"] == "Practitioner"
    # The IG lead reads; she does not write clinical records.
    assert "c" not in "".join(p for s in users["ig.iris"].ceiling.resource for p in s.perms)


def test_gp_system_belongs_to_the_gp_practice(demo):
    from service.auth.identities import get_client

    with demo.db.read() as conn:
        gp = get_client(conn, "gp-system")
    assert gp is not None and gp.auth_method == "private_key_jwt" and gp.grant_types == ("client_credentials",)
    assert gp.organisation == "Organization/org-gp-practice" and gp.ods_code == "A81001"
    assert [k["kid"] for k in gp.jwks["keys"]] == ["gp-system-2026-1"]


def test_demo_load_is_idempotent(demo):
    from service.auth.demo import load_identities

    before = _users(demo)
    counts = load_identities(demo)
    assert counts == {"identities": 10, "clients": 2}
    assert _users(demo) == before
