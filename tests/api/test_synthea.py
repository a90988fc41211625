"""The Synthea set (30 patients, hospitals, practitioners) imports as transactions, and every reference resolves.

Slow-ish (3,000+ resources per database); marked `slow` so a quick loop can deselect it, never skipped.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from service.storage.tables import resource as R
from tests.api.support import FHIR
from tests.conftest import DATA

SYNTHEA = DATA / "synthea-r4"
FIRST = ("hospitals.json", "practitioners.json")


def synthea_files() -> list[Any]:
    files = sorted(SYNTHEA.glob("*.json"), key=lambda p: (p.name not in FIRST, p.name))
    return files


def _references(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                out.append(v)
            else:
                _references(v, out)
    elif isinstance(value, list):
        for v in value:
            _references(v, out)


@pytest.mark.slow
def test_synthea_imports_as_transactions_and_every_reference_resolves(client, clean_services):
    files = synthea_files()
    assert len(files) == 32 and [f.name for f in files[:2]] == list(FIRST)
    expected = 0
    created: set[str] = set()
    started = time.perf_counter()
    for path in files:
        raw = path.read_bytes()
        n = len(orjson.loads(raw)["entry"])
        r = client.post("/fhir", content=raw, headers={"Content-Type": FHIR, "Prefer": "return=minimal"})
        assert r.status_code == 200, f"{path.name}: {r.text[:500]}"
        entries = r.json()["entry"]
        assert len(entries) == n
        assert all(e["response"]["status"] in ("201 Created", "200 OK") for e in entries), path.name
        expected += n
        created |= {e["response"]["location"].split("/fhir/", 1)[1].split("/_history/")[0] for e in entries}
    elapsed = time.perf_counter() - started
    print(f"\nimported {expected} resources in {elapsed:.1f}s ({expected / elapsed:.0f}/s)")

    with clean_services.db.read() as conn:
        # AuditEvents are written by the audit layer for every request; the data under test is the rest.
        rows = conn.execute(select(R.c.res_type, R.c.res_id, R.c.content).where(
            R.c.deleted.is_(False), R.c.res_type != "AuditEvent")).all()
    # service.workflows records a Provenance for each CarePlan write: the server's own, not imported
    # data, but their references must resolve too.
    stored_keys = {f"{t}/{i}" for t, i, _ in rows}
    assert created <= stored_keys and len(created) == expected
    assert all(k.startswith("Provenance/") for k in stored_keys - created)
    stored = {(t, i) for t, i, _ in rows}
    unresolved: list[str] = []
    checked = 0
    for rtype, rid, content in rows:
        res = orjson.loads(content)
        contained = {c.get("id") for c in res.get("contained", [])}
        refs: list[str] = []
        _references(res, refs)
        for ref in refs:
            checked += 1
            if ref.startswith("#"):
                ok = ref[1:] in contained
            else:
                parts = ref.split("/")
                if len(parts) == 4 and parts[2] == "_history":  # a versioned reference
                    parts = parts[:2]
                ok = len(parts) == 2 and (parts[0], parts[1]) in stored
            if not ok:
                unresolved.append(f"{rtype}/{rid}: {ref}")
    assert checked > 8000
    assert not unresolved, f"{len(unresolved)} unresolved, e.g. {unresolved[:5]}"
