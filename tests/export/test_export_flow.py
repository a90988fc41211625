"""$export from kick-off to download: polling, the manifest, files only for the client that asked, cancel,
expiry, audit rows, and bad requests answered with a clear OperationOutcome. Both databases."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select, update

from service.audit.tables import audit_also, audit_log
from service.export import jobs
from service.export.runner import run_job
from service.export.tables import export_chunk, export_file, export_job
from tests.export.support import ASYNC, download, ids, kick_off, manifest, run_worker, seed


def _job_id(url: str) -> str:
    return url.rsplit("=", 1)[1]


def test_a_system_export_runs_from_kick_off_to_download(who, demo):
    pop = seed(who["ada"], demo, n=1)
    url = kick_off(who["gp"], "/fhir/$export?_type=Patient,Observation")
    assert url.startswith("http://testserver/fhir/$export-poll-status?_jobId=")
    r = who["gp"].get(url)
    assert r.status_code == 202 and r.headers["X-Progress"] == "queued" and r.headers["Retry-After"] == "2"
    assert run_worker(demo) == ["done"]
    man = manifest(who["gp"], url)
    assert man["requiresAccessToken"] is True and man["transactionTime"] and man["error"] == []
    assert man["request"] == "http://testserver/fhir/$export?_type=Patient%2CObservation"
    assert [f["type"] for f in man["output"]] == ["Patient", "Observation"]
    found = download(who["gp"], man)
    assert pop.in_care[0] in ids(found, "Patient") and pop.not_in_care[0] not in ids(found, "Patient")


def test_large_sets_are_split_into_several_files(who, demo, monkeypatch):
    seed(who["ada"], demo, n=2)
    monkeypatch.setattr(demo, "settings", demo.settings.model_copy(update={"export_file_resources": 3,
                                                                           "export_page_size": 2}))
    url = kick_off(who["gp"], "/fhir/Patient/$export?_type=Observation")
    assert run_worker(demo) == ["done"]
    man = manifest(who["gp"], url)
    counts = [f["count"] for f in man["output"]]
    assert len(counts) > 2 and all(c <= 3 + 1 for c in counts)  # (at most per-file plus a page, less one)
    found = download(who["gp"], man)
    observations = ids(found, "Observation")
    assert len(observations) == len(set(observations)) == sum(counts)
    searched = who["gp"].get("/fhir/Observation?_count=1000").json()
    assert observations == sorted(e["resource"]["id"] for e in searched["entry"] if e["search"]["mode"] == "match")


def test_files_are_served_only_to_the_client_that_asked(who, demo, anon_client):
    seed(who["ada"], demo, n=1)
    url = kick_off(who["gp"], "/fhir/$export?_type=Patient")
    run_worker(demo)
    man = manifest(who["gp"], url)
    file_url = man["output"][0]["url"]
    for other in ("gary", "ada", "nina"):  # the same practice's GP, the administrator, another organisation
        r = who[other].get(url)
        assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
        r = who[other].get(file_url)
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
        assert who[other].delete(url).status_code == 404
    r = anon_client.get(file_url)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert who["gp"].get(file_url.replace(".ndjson", "9.ndjson")).status_code == 404  # no such file
    assert who["gp"].get(file_url).status_code == 200


def test_every_export_and_every_download_is_audited(who, demo):
    pop = seed(who["ada"], demo, n=1)
    url = kick_off(who["gp"], "/fhir/Patient/$export?_type=Patient")
    jid = _job_id(url)
    run_worker(demo)
    man = manifest(who["gp"], url)
    download(who["gp"], man)
    who["gary"].get(man["output"][0]["url"])  # refused: audited too
    with demo.db.read() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.interaction.in_(
            ("operation:export", "operation:export-poll-status", "operation:export-file"))).order_by(audit_log.c.seq)
        ).all()
        also = {r.patient_id for r in conn.execute(select(audit_also))}
    kick = [r for r in rows if r.interaction == "operation:export"]
    assert len(kick) == 1 and kick[0].client == "gp-system" and kick[0].status == 202
    assert jid in kick[0].detail
    files = [r for r in rows if r.interaction == "operation:export-file"]
    assert [(r.status, r.altid) for r in files] == [(200, "gp-system"), (404, "gp.gary")]
    # the download names the people whose data it held: every one of them finds it in their access log
    named = {files[0].patient_id} | set(orjson.loads(files[0].detail).get("patients", []))
    assert set(pop.in_care) <= named and not named & set(pop.not_in_care)
    assert named - {files[0].patient_id} <= also
    assert "file 1: " in files[0].detail and jid in files[0].detail


def test_cancel_deletes_the_job_and_later_polls_are_404(who, demo):
    seed(who["ada"], demo, n=1)
    queued = kick_off(who["gp"], "/fhir/$export?_type=Patient")
    r = who["gp"].delete(queued)
    assert r.status_code == 202
    assert who["gp"].get(queued).status_code == 404
    assert who["gp"].delete(queued).status_code == 404
    assert run_worker(demo) == []  # nothing left to run
    # a finished job: its files go too
    done = kick_off(who["gp"], "/fhir/$export?_type=Patient")
    run_worker(demo)
    file_url = manifest(who["gp"], done)["output"][0]["url"]
    assert who["gp"].delete(done).status_code == 202
    assert who["gp"].get(file_url).status_code == 404
    with demo.db.read() as conn:
        assert conn.execute(select(export_chunk)).first() is None
        assert conn.execute(select(export_file)).first() is None


def test_a_job_cancelled_while_running_writes_nothing_more(who, demo):
    seed(who["ada"], demo, n=1)
    url = kick_off(who["gp"], "/fhir/$export?_type=Patient,Observation")
    job = jobs.claim(demo.db, "test-worker", 60)
    assert job is not None
    assert who["gp"].get(url).headers["X-Progress"] == "started"
    assert who["gp"].delete(url).status_code == 202
    assert run_job(demo, job) == "lost"
    with demo.db.read() as conn:
        assert conn.execute(select(export_chunk)).first() is None
        assert conn.execute(select(export_file)).first() is None
    assert who["gp"].get(url).status_code == 404


def test_files_expire_after_the_configured_time(who, demo):
    seed(who["ada"], demo, n=1)
    url = kick_off(who["gp"], "/fhir/$export?_type=Patient")
    run_worker(demo)
    man = manifest(who["gp"], url)
    with demo.db.read() as conn:
        job = jobs.get(conn, _job_id(url))
    assert job is not None and job.expires_us - job.finished_us == demo.settings.export_ttl_seconds * 1_000_000
    with demo.db.write() as conn:  # (time passes)
        conn.execute(update(export_job).values(expires_us=job.finished_us - 1))
    assert who["gp"].get(url).status_code == 404
    assert who["gp"].get(man["output"][0]["url"]).status_code == 404
    assert jobs.purge_expired(demo.db) == 1
    with demo.db.read() as conn:
        assert conn.execute(select(export_job)).first() is None
        assert conn.execute(select(export_chunk)).first() is None


@pytest.mark.parametrize("path,headers,status,says", [
    ("/fhir/$export", {"Accept": "application/fhir+json"}, 400, "respond-async"),
    ("/fhir/$export?_outputFormat=text/csv", ASYNC, 400, "_outputFormat"),
    ("/fhir/$export?_since=yesterday", ASYNC, 400, "_since"),
    ("/fhir/$export?_type=Patient,Unicorn", ASYNC, 400, "Unicorn"),
    ("/fhir/$export?_type=AuditEvent", ASYNC, 400, "AuditEvent"),
    ("/fhir/$export?_elements=id", ASYNC, 400, "_elements"),
    ("/fhir/$export?patient=Patient/pat-pat", ASYNC, 400, "patient"),
    ("/fhir/$export?_until=2026-01-01T00:00:00Z", ASYNC, 400, "_until"),
    ("/fhir/$export?foo=bar", ASYNC, 400, "foo"),
    ("/fhir/$export?_typeFilter=Observation", ASYNC, 400, "_typeFilter"),
    ("/fhir/$export?_typeFilter=Observation?colour=red", ASYNC, 400, "colour"),
    ("/fhir/$export?_type=Patient&_typeFilter=Observation?status=final", ASYNC, 400, "_type"),
    ("/fhir/$export?_typeFilter=Observation?_count=5", ASYNC, 400, "_count"),
    ("/fhir/Patient/$export?_type=Organization", ASYNC, 400, "Organization"),
    ("/fhir/Group/no-such-group/$export", ASYNC, 404, "Group"),
    ("/fhir/$export-poll-status", {}, 400, "_jobId"),
    ("/fhir/$export-poll-status?_jobId=0123456789abcdef", {}, 404, "0123456789abcdef"),
    ("/fhir/$export", {**ASYNC, "X-Purpose-Of-Use": "BTG", "X-Break-Glass-Reason": "unconscious"}, 403,
     "break-glass"),
])
def test_bad_requests_get_a_clear_operation_outcome(who, demo, path, headers, status, says):
    r = who["gp"].get(path, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and says in body["issue"][0]["diagnostics"]
    with demo.db.read() as conn:
        assert conn.execute(select(export_job)).first() is None  # nothing queued


def test_a_client_may_not_export_a_type_its_scopes_do_not_reach(who, demo, auth_headers):
    from tests.workflows.support import As

    narrow = As(who["gp"].client, auth_headers(client="gp-system", scope="system/Patient.rs"))
    r = narrow.get("/fhir/$export?_type=Observation", headers=ASYNC)
    assert r.status_code == 403
    url = kick_off(narrow, "/fhir/$export")  # the default types: what the scopes reach
    run_worker(demo)
    assert [f["type"] for f in manifest(narrow, url)["output"]] == ["Patient"]


def test_kick_off_by_post_with_parameters(who, demo):
    seed(who["ada"], demo, n=1)
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"},
                                                        {"name": "_outputFormat", "valueString": "ndjson"}]}
    r = who["gp"].post("/fhir/$export", json=body, headers=ASYNC)
    assert r.status_code == 202, r.text
    run_worker(demo)
    assert [f["type"] for f in manifest(who["gp"], r.headers["Content-Location"])["output"]] == ["Patient"]
