"""The IG lead's reports: $access-report, $denials-report, $objections-report (numbers match what was done)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import insert

from service import audit
from service.api.pipeline import handle
from service.fhir.request import FhirRequest
from service.policy.tables import data_opt_out
from tests.audit.ig_support import load_demo, parameters, staff
from tests.audit.support import as_user

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _instant(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def demo(clean_services):  # type: ignore[no-untyped-def]
    load_demo(clean_services)
    return clean_services


@pytest.fixture
def iris(auth_headers):  # type: ignore[no-untyped-def]
    return auth_headers("ig.iris")


def _report(client, headers, op: str, query: str = "") -> dict:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/${op}{query}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _by_org(body: dict, name: str = "organisation") -> dict[str, dict]:
    return {(p.get("name") or p.get("odsCode", {}).get("value")): p for p in parameters(body, name)}


# -- $access-report ------------------------------------------------------------------------------------
def _create_observation(services, ctx) -> int:  # type: ignore[no-untyped-def]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "Blood pressure"},
           "subject": {"reference": "Patient/pat-pat"}}
    req = FhirRequest(method="POST", path="Observation", body=orjson.dumps(obs), content_type="application/fhir+json")
    return handle(req, services, ctx).status


def test_access_report_counts_accesses_by_organisation(client, demo, iris, auth_headers):
    start = _instant(datetime.now(UTC))
    nina = staff("nurse.nina", trusted=True)
    assert as_user(demo, nina, "GET", "Patient/pat-pat").status == 200
    assert as_user(demo, nina, "GET", "Patient/pat-pat").status == 200
    assert as_user(demo, nina, "GET", "Observation", [("subject", "Patient/pat-pat")]).status == 200
    assert _create_observation(demo, nina) == 201
    assert as_user(demo, nina, "GET", "Patient/no-such-patient").status == 404
    wes = staff("ward.wes", purpose=("BTG",), reason="Collapsed on the ward", trusted=True)
    assert as_user(demo, wes, "GET", "Patient/pat-paula").status == 200
    assert client.get("/fhir/Patient/pat-pat", headers=auth_headers(client="gp-system")).status_code == 200

    body = _report(client, iris, "access-report", f"?start={start}")
    assert parameters(body, "start")[0].startswith(start[:19])
    orgs = _by_org(body)
    community = orgs["Riverside Community NHS Trust"]
    assert community["reference"]["reference"] == "Organization/org-community-trust"
    assert community["odsCode"] == {"system": ODS, "value": "RYX"}
    assert {k: community[k] for k in ("events", "reads", "searches", "writes", "other", "denied", "failed",
                                      "breakGlass", "patients")} == \
        {"events": 5, "reads": 2, "searches": 1, "writes": 1, "other": 0, "denied": 1, "failed": 0,
         "breakGlass": 0, "patients": 1}
    acute = orgs["Westshire Hospitals NHS Foundation Trust"]
    assert (acute["events"], acute["reads"], acute["breakGlass"], acute["patients"]) == (1, 1, 1, 1)
    gp = orgs["Meadow Lane Surgery"]
    assert (gp["events"], gp["reads"], gp["breakGlass"], gp["patients"]) == (1, 1, 0, 1)
    assert parameters(body, "organisation")[0]["name"] == "Riverside Community NHS Trust"  # most first
    [total] = parameters(body, "total")
    assert (total["events"], total["reads"], total["searches"], total["writes"], total["denied"],
            total["breakGlass"], total["patients"]) == (7, 4, 1, 1, 1, 1, 2)


def test_access_report_window_excludes_other_times(client, demo, iris):
    assert as_user(demo, staff("nurse.nina", trusted=True), "GET", "Patient/pat-pat").status == 200
    body = _report(client, iris, "access-report", "?start=2001-01-01&end=2001-01-31")
    assert parameters(body, "organisation") == []
    assert parameters(body, "total")[0]["events"] == 0
    assert parameters(body, "start") == ["2001-01-01T00:00:00.000000+00:00"]
    assert parameters(body, "end") == ["2001-02-01T00:00:00.000000+00:00"]  # an end date covers its whole day
    # default: the last 30 days, ending now
    body = _report(client, iris, "access-report")
    [start], [end] = parameters(body, "start"), parameters(body, "end")
    span = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    assert span == timedelta(days=30)
    assert parameters(body, "total")[0]["reads"] >= 1


@pytest.mark.parametrize("op", ["access-report", "denials-report"])
@pytest.mark.parametrize("query,param,code", [("?start=yesterday", "start", "invalid"),
                                              ("?end=2026-13-01", "end", "invalid"),
                                              ("?start=2026-02-01&end=2026-01-01", "start", "invalid"),
                                              ("?start=2020-01-01&end=2026-01-01", "start", "too-costly")])
def test_reports_reject_a_bad_window_naming_the_parameter(client, demo, iris, op, query, param, code):
    r = client.get(f"/fhir/${op}{query}", headers=iris)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert f"'{param}'" in issue["diagnostics"] and issue["code"] == code


# -- $denials-report -----------------------------------------------------------------------------------
def test_denials_report_groups_refused_requests_by_reason_organisation_and_user(client, demo, iris, auth_headers):
    start = _instant(datetime.now(UTC))
    # refused by the policy, with the basis noted on the request's event (as the enforcement point does)
    for n, text in enumerate(("policy: deny Patient/pat-pat (Consent/objection-1)",
                              "policy: deny Consent/objection-1 provision (deny) decides",
                              "policy: deny Patient/pat-paula: no care relationship")):
        ctx = staff("nurse.nina", trusted=True)
        notes = ("policy: permit Patient/pat-x (default:direct-care)", text)  # (the first is not a denial: ignored)
        assert as_user(demo, ctx, "GET", f"Patient/gone-{n}", notes=notes).status == 404
    # a policy-decision event and the refused interaction of the same request count once
    wes = staff("ward.wes", trusted=True)
    with demo.db.write() as conn:
        audit.record_decision(conn, wes, permit=False, interaction="read", target="Patient/pat-paula",
                              patient="pat-paula", reason="no care relationship with Patient/pat-paula")
    assert as_user(demo, wes, "GET", "Patient/hidden-b").status == 404
    # plain refusals, grouped by their description with the ids taken out
    for pid in ("missing-c", "missing-d"):
        assert as_user(demo, staff("nurse.nina", trusted=True), "GET", f"Patient/{pid}").status == 404
    # a real token whose scopes do not allow it
    narrow = auth_headers("nurse.nina", scope="user/Observation.rs")
    assert client.get("/fhir/Patient/pat-pat", headers=narrow).status_code == 403
    # not a denial
    assert as_user(demo, staff("nurse.nina", trusted=True), "GET", "Patient/pat-pat").status == 200

    body = _report(client, iris, "denials-report", f"?start={start}")
    assert parameters(body, "total") == [7]
    assert parameters(body, "events") == [8]
    reasons = {(p["reason"], p["kind"]): p["count"] for p in parameters(body, "reason")}
    scope_reason = [k for k in reasons if "scopes do not allow" in k[0]]
    assert len(scope_reason) == 1 and scope_reason[0][1] == "outcome" and reasons[scope_reason[0]] == 1
    assert {k: v for k, v in reasons.items() if k not in scope_reason} == {
        ("Consent/objection-1", "policy"): 2,
        ("no care relationship", "policy"): 1,
        ("Patient/{id} is not known", "outcome"): 2,
        ("no care relationship with Patient/{id}", "decision"): 1,
    }
    assert parameters(body, "reason")[0]["count"] == 2  # most first
    users = {p["user"]: p for p in parameters(body, "user")}
    assert {u: p["count"] for u, p in users.items()} == {"nurse.nina": 6, "ward.wes": 1}
    assert users["nurse.nina"]["name"] == "Nina Nurse"
    assert users["nurse.nina"]["reference"] == {"reference": "Practitioner/prac-nina", "display": "Nina Nurse"}
    orgs = _by_org(body)
    assert {k: p["count"] for k, p in orgs.items()} == {"Riverside Community NHS Trust": 6,
                                                       "Westshire Hospitals NHS Foundation Trust": 1}
    assert orgs["Westshire Hospitals NHS Foundation Trust"]["odsCode"]["value"] == "RBZ"
    assert "truncated" not in [p["name"] for p in body["parameter"]]


def test_denials_report_streams_more_events_than_one_batch(client, demo, iris, monkeypatch):
    from service.audit.reports import denials as ig_report_denials

    monkeypatch.setattr(ig_report_denials, "BATCH", 3)
    start = _instant(datetime.now(UTC))
    for n in range(8):
        assert as_user(demo, staff("gp.gary", trusted=True), "GET", f"Patient/none-{n}").status == 404
    body = _report(client, iris, "denials-report", f"?start={start}")
    assert parameters(body, "total") == [8] and parameters(body, "events") == [8]
    assert [(p["reason"], p["count"]) for p in parameters(body, "reason")] == [("Patient/{id} is not known", 8)]


def test_denials_report_is_empty_outside_the_window(client, demo, iris):
    assert as_user(demo, staff("nurse.nina", trusted=True), "GET", "Patient/missing").status == 404
    body = _report(client, iris, "denials-report", "?start=2001-01-01&end=2001-01-02")
    assert parameters(body, "total") == [0] and parameters(body, "reason") == []


# -- $objections-report --------------------------------------------------------------------------------
def _consent(patient: str, provision: dict, *, scope: str = "patient-privacy", rule: str = "OPTOUT",
             status: str = "active") -> dict:
    return {"resourceType": "Consent", "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient}"}, "dateTime": "2026-01-02T10:00:00Z",
            "policyRule": {"coding": [{"system": V3_ACT, "code": rule}]}, "provision": provision}


def _actor(reference: dict) -> dict:
    return {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": "PRCP"}]}, "reference": reference}


CONSENTS = [
    # 1 opt-out of all sharing
    _consent("pat-pat", {"type": "deny"}),
    # 2 opt-out of all sharing except the GP practice (a nested exception)
    _consent("pat-paula", {"type": "deny", "provision": [
        {"type": "permit", "actor": [_actor({"reference": "Organization/org-gp-practice"})]}]}),
    # 3 opt-out from a named organisation (by reference)
    _consent("pat-pat", {"type": "deny", "actor": [_actor({"reference": "Organization/org-council-asc"})]}),
    # 4 opt-out from a named organisation (by ODS code), which also keeps mental health data back
    _consent("pat-paula", {"type": "deny", "actor": [_actor({"identifier": {"system": ODS, "value": "RBZ"}})],
                           "provision": [{"type": "deny", "securityLabel": [{"system": V3_ACT, "code": "PSY"}]}]}),
    # 5 share everything except sexual health data
    _consent("pat-pat", {"type": "permit", "provision": [
        {"type": "deny", "securityLabel": [{"system": V3_ACT, "code": "SEX"}]}]}, rule="OPTIN"),
    # 6 a carer's access
    _consent("pat-pat", {"type": "permit", "actor": [_actor({"reference": "RelatedPerson/rp-carl"})]},
             rule="OPTIN"),
    # 7 a secondary-use objection (National Data Opt-out recorded as a Consent)
    _consent("pat-paula", {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                         "code": "HRESCH"}]}, scope="research"),
    # 8 an explicit opt-in
    _consent("pat-paula", {"type": "permit"}, rule="OPTIN"),
    # not in force: withdrawn, expired, not yet started
    _consent("pat-pat", {"type": "deny"}, status="inactive"),
    _consent("pat-pat", {"type": "deny", "period": {"start": "2019-01-01", "end": "2020-12-31"}}),
    _consent("pat-pat", {"type": "deny", "actor": [_actor({"reference": "Organization/org-acute-trust"})],
                         "period": {"start": "2099-01-01"}}),
]


def _figures(body: dict) -> dict:
    """The report's counts, comparable between two runs."""
    out: dict = {name: parameters(body, name)[0] for name in ("consentsInForce", "patients", "notEvaluable",
                                                             "nationalDataOptOutList")}
    out["kind"] = {p["code"]: p["count"] for p in parameters(body, "kind")}
    for name in ("scope", "policyRule", "dataClass"):
        out[name] = {p["code"]["code"]: p["count"] for p in parameters(body, name)}
    out["organisation"] = {p.get("name"): p["consents"] for p in parameters(body, "organisation")}
    return out


def _added(before: dict, after: dict) -> dict:
    """What changed between two runs of the report (the demo record holds a consent of its own)."""
    out: dict = {}
    for key, value in after.items():
        if isinstance(value, dict):
            diff = {k: v - before[key].get(k, 0) for k, v in value.items() if v != before[key].get(k, 0)}
            out[key] = diff
        else:
            out[key] = value - before[key]
    return out


def test_objections_report_counts_consents_in_force_by_kind_and_organisation(client, demo, iris):
    before = _figures(_report(client, iris, "objections-report"))
    for consent in CONSENTS:
        r = client.post("/fhir/Consent", json=consent)
        assert r.status_code == 201, r.text
    with demo.db.write() as conn:
        conn.execute(insert(data_opt_out), [{"nhs_number": n, "source": "test", "recorded_us": 1}
                                            for n in ("9434765919", "9449306753", "9000000009")])

    body = _report(client, iris, "objections-report")
    added = _added(before, _figures(body))
    assert added == {
        "consentsInForce": 8, "patients": 1,  # pat-pat had a consent already; pat-paula has her first
        "notEvaluable": 0, "nationalDataOptOutList": 3,
        "kind": {"opt-out-all": 2, "opt-out-organisations": 2, "opt-out-data-classes": 2, "opt-in": 1,
                 "proxy-grant": 1, "research-opt-out": 1},
        "scope": {"patient-privacy": 7, "research": 1},
        "policyRule": {"OPTOUT": 5, "OPTIN": 3},
        "dataClass": {"PSY": 1, "SEX": 1},
        "organisation": {"Westshire County Council Adult Social Care": 1,
                         "Westshire Hospitals NHS Foundation Trust": 1},
    }
    assert parameters(body, "patients") == [2]
    orgs = _by_org(body)
    council = orgs["Westshire County Council Adult Social Care"]
    assert council["odsCode"]["value"] == "E10000019"
    assert council["reference"]["reference"] == "Organization/org-council-asc"
    acute = orgs["Westshire Hospitals NHS Foundation Trust"]  # named by ODS code: resolved to the record
    assert acute["reference"]["reference"] == "Organization/org-acute-trust" and acute["odsCode"]["value"] == "RBZ"
    labels = {p["code"]["code"]: p["code"] for p in parameters(body, "dataClass")}
    assert labels["PSY"] == {"system": V3_ACT, "code": "PSY", "display": "psychiatry information"}


def test_objections_report_with_nothing_recorded(client, clean_services, iris):
    body = _report(client, iris, "objections-report")
    assert parameters(body, "consentsInForce") == [0] and parameters(body, "nationalDataOptOutList") == [0]
    assert all(p["count"] == 0 for p in parameters(body, "kind")) and len(parameters(body, "kind")) == 8
    assert parameters(body, "organisation") == [] and parameters(body, "patients") == [0]


def test_a_withdrawn_objection_leaves_the_report(client, demo, iris):
    before = _figures(_report(client, iris, "objections-report"))
    r = client.post("/fhir/Consent", json=_consent("pat-paula", {"type": "deny"}))
    assert r.status_code == 201, r.text
    consent = r.json()
    during = _figures(_report(client, iris, "objections-report"))
    assert _added(before, during)["kind"] == {"opt-out-all": 1}
    consent["status"] = "inactive"
    assert client.put(f"/fhir/Consent/{consent['id']}", json=consent).status_code == 200
    assert _figures(_report(client, iris, "objections-report")) == before

@pytest.mark.parametrize("note,basis", [
    ("policy: deny Patient/p1 (Consent/c9)", "Consent/c9"),
    ("policy: deny Patient/p1 (default:no-basis)", "default:no-basis"),
    ("policy: search deny Patient/p1 (rule:nopat)", "rule:nopat"),
    ("policy: deny Patient/p1: no care relationship", "no care relationship"),
    ("policy: deny Patient/p1: restricted label R", "restricted label R"),
    ("policy: deny Consent/c9 provision (deny) decides", "Consent/c9"),
    ("policy: deny Patient/p1", "deny"),
    ("policy: permit Patient/p1 (rule:own-record)", None),
    ("break-glass: access to Patient/p1 under grant g1", None),
])
def test_denial_reasons_are_read_from_the_policy_notes(note, basis):
    from service.audit.reports.denials import policy_basis

    assert policy_basis(note) == basis
