"""Load the demo data idempotently: a record is written only when it is new or has changed."""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.db import Database
from service.fhir.validation import validate_resource


def _same(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    a = {k: v for k, v in stored.items() if k != "meta"}
    b = {k: v for k, v in wanted.items() if k != "meta"}
    return a == b


def load_records(services: Any) -> dict[str, int]:
    """The demo records, written by the server's own repository (data migration: ids as given)."""
    from service.demo.records import records
    from service.repository import Repository

    counts = {"written": 0, "unchanged": 0}
    with services.db.write() as conn:
        repo = Repository.internal(services, conn)
        for res in records():
            validate_resource(res)
            cur = repo.get(res["resourceType"], res["id"])
            if cur is not None and _same(cur.json(), res):
                counts["unchanged"] += 1
                continue
            repo.update(res["resourceType"], res["id"], res)
            counts["written"] += 1
    return counts


def load(settings: Settings) -> str:
    from service.bootstrap import build_services

    services = build_services(settings, Database(settings))
    summary = load_records(services)
    for step in services.loaders:
        summary.update(step(services))
    services.db.dispose()
    return "demo data: " + ", ".join(f"{k} {v}" for k, v in summary.items())
