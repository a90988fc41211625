"""/metrics as Prometheus scrapes it from `sharedcare serve --workers 2`: requests by interaction, type and status
with latency histograms added up over both workers whichever answers the scrape, the database pools, the audit's
group commit and seals, and the seal lag; loopback only (a forwarded request, as through the public proxy, gets
404); nothing personal in it. SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.support import server_env
from tests.running import running_server


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_add_up_over_workers_and_answer_only_loopback(demo, settings, auth_headers, tmp_path):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")
    env = server_env(settings, SHAREDCARE_AUDIT_SEAL_SECONDS="1",
                     SHAREDCARE_AUDIT_ANCHOR=str(tmp_path / "anchor.jsonl"))
    with running_server(tmp_path / "srv", env, workers=2) as base, httpx.Client(base_url=base, timeout=60) as h:
        for _ in range(30):
            assert h.get("/fhir/Patient/pat-pat", headers=nina).status_code == 200
        for _ in range(7):
            assert h.get("/fhir/Patient/pat-paula", headers=nina).status_code == 404
        for _ in range(5):
            assert h.get("/fhir/CarePlan", params={"subject": "Patient/pat-pat"}, headers=nina).status_code == 200
        assert h.get("/fhir/Patient/pat-pat").status_code == 401
        assert h.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
        assert h.get("/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 404
        time.sleep(2.5)  # (the supervisor seals every second)
        seen = []
        for _ in range(6):  # whichever worker answers, the counts are both workers'
            resp = h.get("/metrics")
            assert resp.status_code == 200, resp.text
            assert resp.headers["content-type"].startswith("text/plain")
            seen.append(_samples(resp.text))
        text = resp.text
    for s in seen:
        assert _value(s, "sharedcare_requests_total", interaction="read", type="Patient", status="200") == 30
        assert _value(s, "sharedcare_requests_total", interaction="read", type="Patient", status="404") == 7
        assert _value(s, "sharedcare_requests_total", interaction="search-type", type="CarePlan", status="200") == 5
        assert _value(s, "sharedcare_requests_total", interaction="unknown", type="Patient", status="401") == 1
        assert _value(s, "sharedcare_request_duration_seconds_count", interaction="read", type="Patient") == 37
        assert _value(s, "sharedcare_request_duration_seconds_bucket", interaction="read", type="Patient",
                      le="+Inf") == 37
        assert _value(s, "sharedcare_request_duration_seconds_sum", interaction="read", type="Patient") > 0
    s = seen[-1]
    assert _value(s, "sharedcare_policy_decisions_total", verdict="permit") >= 30  # (nina reading her patient)
    assert _value(s, "sharedcare_policy_decisions_total", verdict="deny") >= 7  # (no care relationship)
    assert _value(s, "sharedcare_db_pool_size", pool="write") >= 5  # (summed over the live processes)
    assert ("sharedcare_db_connections_in_use", (("pool", "write"),)) in s
    if settings.is_sqlite:  # (SQLite: every read's row through the committer thread; PostgreSQL: on the loop)
        assert _value(s, "sharedcare_audit_commit_seconds_count") >= 35
    else:
        assert _value(s, "sharedcare_audit_commit_seconds_count") >= 35
    assert _value(s, "sharedcare_audit_seal_seconds_count") >= 1
    assert _value(s, "sharedcare_audit_sealed_rows_total") >= 43
    assert _value(s, "sharedcare_database_up") == 1
    assert ("sharedcare_export_jobs", (("state", "queued"),)) in s  # (the background queues, idle here)
    assert _value(s, "sharedcare_subscription_deliveries_pending") == 0
    assert ("sharedcare_subscription_oldest_pending_seconds", ()) in s
    assert 0 <= _value(s, "sharedcare_audit_seal_lag_seconds") < 30
    assert 0 <= _value(s, "sharedcare_audit_last_seal_age_seconds") < 30
    for private in ("pat-pat", "nina", "Bearer", "Patient/"):
        assert private not in text


def test_metrics_are_not_served_to_remote_clients(client):  # type: ignore[no-untyped-def]
    resp = client.get("/metrics")  # (the test client's address is not loopback)
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"
