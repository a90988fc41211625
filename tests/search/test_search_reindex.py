"""`sharedcare search reindex [--type T]` rebuilds the search indexes of existing data (both databases)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import delete, func, select

from service.search.tables import ALL_TABLES, sp_compartment

ROOT = Path(__file__).resolve().parents[2]
NHS = "https://fhir.nhs.uk/Id/nhs-number"


MINE = ("Patient", "Observation", "Organization")  # (requests add AuditEvents; a process start publishes a form)


def _counts(services) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Index rows of the types these tests write."""
    with services.db.read() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t).where(t.c.res_type.in_(MINE)))
                .scalar_one() for t in ALL_TABLES}


def _wipe(services, rtype: str | None = None) -> None:  # type: ignore[no-untyped-def]
    with services.db.write() as conn:
        for t in ALL_TABLES:
            conn.execute(delete(t).where(t.c.res_type == rtype) if rtype else delete(t).where(
                t.c.res_type.in_(MINE)))


def _reindex(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": settings.base_url,
           "SHAREDCARE_VAR_DIR": str(settings.var_dir), "SHAREDCARE_KEYS_DIR": str(settings.keys_dir),
           "SHAREDCARE_DEMO": "1"}
    return subprocess.run([sys.executable, "-m", "service.cli", "search", "reindex", *args], check=False, cwd=ROOT,
                          env=env,
                          capture_output=True, text=True, timeout=300)


def _found(client, url: str) -> int:  # type: ignore[no-untyped-def]
    r = client.get("/fhir/" + url)
    assert r.status_code == 200, r.text
    return r.json()["total"]


def test_reindex_rebuilds_every_index_row(client, clean_services, settings):  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Reindex"}],
                                              "identifier": [{"system": NHS, "value": "9434765919"}]}).json()["id"]
    client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final",
                                           "code": {"text": "weight"}, "subject": {"reference": f"Patient/{pid}"},
                                           "effectiveDateTime": "2024-01-01", "valueQuantity": {"value": 70}})
    gone = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Reindex"}]}).json()
    client.delete(f"/fhir/Patient/{gone['id']}")
    before = _counts(clean_services)
    assert before["sp_string"] and before["sp_date"] and before[sp_compartment.name]

    _wipe(clean_services)
    assert _found(client, "Patient?family=reindex") == 0
    done = _reindex(settings)
    assert done.returncode == 0, done.stderr
    assert "reindexed" in done.stderr
    assert _counts(clean_services) == before
    assert _found(client, "Patient?family=reindex") == 1  # the deleted one stays out
    assert _found(client, f"Patient?identifier={NHS}|9434765919") == 1
    assert _found(client, f"Observation?subject=Patient/{pid}&date=2024&value-quantity=70") == 1
    assert _found(client, f"Patient/{pid}/Observation") == 1


def test_reindex_of_one_type(client, clean_services, settings):  # type: ignore[no-untyped-def]
    client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Only"}]})
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Council"})
    before = _counts(clean_services)
    _wipe(clean_services, "Patient")
    _wipe(clean_services, "Organization")
    assert _reindex(settings, "--type", "Patient").returncode == 0
    assert _found(client, "Patient?family=only") == 1
    assert _found(client, "Organization?name=council") == 0  # not this type
    assert _reindex(settings, "--type", "Organization").returncode == 0
    assert _counts(clean_services) == before
    bad = _reindex(settings, "--type", "Nonsense")
    assert bad.returncode == 2 and "Nonsense" in bad.stderr
