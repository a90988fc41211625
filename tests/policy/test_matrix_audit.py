"""Every access in the policy matrix leaves exactly one audit row, with the basis of the decision: each demo
identity reads, vreads, searches and patches each matrix record (live and deleted, Pat's and Paula's) and searches
each type for each person; the answer's X-Request-Id finds its row. A permit or a denial names its basis (a `policy:`
note: the consent, the default, the care relationship or its absence, the administrator, the scopes); a
refusal before any record was looked at carries the refusal's own text. Both databases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import text

from tests.policy.conftest import PEOPLE
from tests.policy.matrix_support import PATIENTS, Fixture, build

IDENTITIES = [*sorted(PEOPLE), "gp"]


@pytest.fixture
def fixtures(who) -> list[Fixture]:  # type: ignore[no-untyped-def]
    return build(who["ada"])


PATCH = [{"op": "add", "path": "/language", "value": "en-GB"}]


def _requests(fixtures: list[Fixture]) -> list[tuple[str, str]]:
    out = []
    for f in fixtures:
        out += [("GET", f.url), ("GET", f"{f.url}/_history/1"), ("GET", f"/fhir/{f.rtype}?_id={f.rid}")]
    for rtype in sorted({f.rtype for f in fixtures}):
        out += [("GET", f"/fhir/{rtype}?patient=Patient/{pid}" if rtype not in ("Consent", "AuditEvent") else
                 f"/fhir/{rtype}?patient={pid}") for pid in PATIENTS.values()]
    out += [("PATCH", f.url) for f in fixtures if not f.deleted]  # (last: the reads see the records as built)
    return out


def _send(caller: Any, method: str, url: str) -> Any:
    if method == "PATCH":
        return caller.patch(url, json=PATCH, headers={"Content-Type": "application/json-patch+json"})
    return caller.get(url)


@pytest.mark.parametrize("name", IDENTITIES)
def test_every_access_leaves_one_row_with_its_basis(who, fixtures, services, name):  # type: ignore[no-untyped-def]
    answers = [(f"{method} {url}", _send(who[name], method, url)) for method, url in _requests(fixtures)]
    with services.db.read() as conn:
        rows = conn.execute(text("SELECT request_id, status, outcome, detail FROM audit_log WHERE request_id IN "
                                 "(SELECT request_id FROM audit_log GROUP BY request_id)")).all()
    by_id: dict[str, list[Any]] = {}
    for r in rows:
        by_id.setdefault(r[0], []).append(r)
    failed = []
    for url, resp in answers:
        found = by_id.get(resp.headers["x-request-id"], [])
        if len(found) != 1:
            failed.append(f"{name} {url}: {len(found)} audit rows")
            continue
        _, status, outcome, detail = found[0]
        detail = orjson.loads(detail)
        notes = [n for n in detail.get("notes", []) if n.startswith("policy:")]
        if status != resp.status_code or outcome != (0 if status < 400 else 4 if status < 500 else 8):
            failed.append(f"{name} {url}: row says {status}/{outcome}, answer was {resp.status_code}")
        if not notes and not (status in (400, 401, 403, 405) and detail.get("desc")):
            failed.append(f"{name} {url} -> {resp.status_code}: no basis in {detail}")
    assert not failed, f"{len(failed)} cells:\n" + "\n".join(failed[:60])
