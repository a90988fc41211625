"""$export from kick-off to download: polling, the manifest, files only for the client that asked, cancel,
expiry, and bad requests. Both databases."""

from __future__ import annotations

from tests.export.support import ASYNC, download, ids, kick_off, manifest, run_worker, seed


def test_a_system_export_runs_from_kick_off_to_download(who, demo):
    pop = seed(who["ada"], demo, n=1)
    url = kick_off(who["gp"], "/fhir/$export?_type=Patient,Observation")
    r = who["gp"].get(url)
    assert r.status_code == 202 and r.headers["X-Progress"] and r.headers["Retry-After"]
    assert run_worker(demo) == ["done"]
    man = manifest(who["gp"], url)
    assert man["requiresAccessToken"] is True and man["transactionTime"]
    assert man["request"].endswith("/$export?_type=Patient%2CObservation")
    found = download(who["gp"], man)
    assert set(found) == {"Patient", "Observation"}
    assert pop.in_care[0] in ids(found, "Patient") and pop.not_in_care[0] not in ids(found, "Patient")
