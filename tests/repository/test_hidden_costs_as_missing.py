"""A resource the caller may not see costs exactly what a missing one does: the same queries, in the same
order, on every path that names an id (read, vread, history, PUT, PATCH, DELETE): no timing tells them apart.
What the audit step writes is left out (it records what was tried, whatever the answer), and so is what
authentication reads (the revocation list, re-read by whichever request finds it stale: not the data path)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.policy.support import observation

NOT_DATA_PATH = re.compile(r"\b(audit|auth)_\w+\b", re.IGNORECASE)


@contextmanager
def statements(services: Any) -> Iterator[list[str]]:
    """The data path's statements (SQL text, parameters blanked) run while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not NOT_DATA_PATH.search(statement):
            seen.append(re.sub(r"\s+", " ", statement))

    for engine in services.db.engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in services.db.engines:
            event.remove(engine, "before_cursor_execute", record)


INTERACTIONS = {
    "read": lambda me, url, body: me.get(url),
    "vread": lambda me, url, body: me.get(f"{url}/_history/1"),
    "history": lambda me, url, body: me.get(f"{url}/_history"),
    "PUT": lambda me, url, body: me.put(url, json=body),
    "PATCH": lambda me, url, body: me.patch(url, json=[{"op": "add", "path": "/language", "value": "en"}],
                                            headers={"Content-Type": "application/json-patch+json"}),
    "DELETE": lambda me, url, body: me.delete(url),
}


@pytest.mark.parametrize("interaction", sorted(INTERACTIONS))
def test_a_hidden_id_costs_what_a_missing_one_does(who, services, interaction):  # type: ignore[no-untyped-def]
    hidden = who["ada"].post("/fhir/Observation", json=observation("pat-paula", "private")).json()
    missing = "00000000-0000-4000-8000-000000000000"
    answers, costs = {}, {}
    for name, rid in (("hidden", hidden["id"]), ("missing", missing)):
        body = {**observation("pat-paula", "x"), "id": rid}
        with statements(services) as seen:
            r = INTERACTIONS[interaction](who["wes"], f"/fhir/Observation/{rid}", body)
        answers[name] = (r.status_code, r.text.replace(rid, "ID"))
        costs[name] = list(seen)
    assert answers["hidden"] == answers["missing"], answers
    assert costs["hidden"] == costs["missing"], costs
    assert any("FROM resource" in s for s in costs["hidden"]), costs  # the data path was measured
    assert who["ada"].get(f"/fhir/Observation/{hidden['id']}").json()["meta"]["versionId"] == "1"  # unchanged
