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
    from service.demo.records import records

    counts = {"written": 0, "unchanged": 0}
    with services.db.write() as conn:
        for res in records():
            validate_resource(res)
            cur = services.store.current(conn, res["resourceType"], res["id"])
            if cur is not None and not cur.deleted and _same(cur.json(), res):
                counts["unchanged"] += 1
                continue
            services.store.update(conn, res, res["id"])
            counts["written"] += 1
    return counts


LOADERS: list[Any] = []  # further steps (identities, keys) register here: (services) -> dict


def load(settings: Settings) -> str:
    from service.api.app import build_services

    services = build_services(settings, Database(settings))
    summary = load_records(services)
    for step in LOADERS:
        summary.update(step(services))
    services.db.dispose()
    return "demo data: " + ", ".join(f"{k} {v}" for k, v in summary.items())
