"""Load the demo data idempotently: a record is written only when it is new or has changed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.fhir.validation import validate_resource


def _same(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    a = {k: v for k, v in stored.items() if k != "meta"}
    b = {k: v for k, v in wanted.items() if k != "meta"}
    return a == b


def write_records(services: Any, resources: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Write these records with their own ids (the server's own repository: data migration), each only when it
    is new or has changed."""
    from service.repository import Repository

    counts = {"written": 0, "unchanged": 0}
    with services.db.write() as conn:
        repo = Repository.internal(services, conn)
        for res in resources:
            validate_resource(res)
            cur = repo.get(res["resourceType"], res["id"])
            if cur is not None and _same(cur.json(), res):
                counts["unchanged"] += 1
                continue
            repo.update(res["resourceType"], res["id"], res)
            counts["written"] += 1
    return counts


def load_records(services: Any) -> dict[str, int]:
    from service.demo.records import records

    return write_records(services, records())
