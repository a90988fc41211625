"""`sharedcare audit verify` finds an altered, removed or reordered event and names the first bad one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.cli import main
from service.config import get_settings
from tests.audit.support import patient, sql


@pytest.fixture
def verify(client, settings, monkeypatch) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()

    def run(capsys: Any) -> tuple[int, str]:
        code = main(["audit", "verify"])
        out = capsys.readouterr()
        return code, out.out + out.err

    yield run
    get_settings.cache_clear()


def _trail(client: Any, services: Any, n: int = 40) -> list[Any]:
    """n audited requests; returns the chain rows (lane, seq, event_id) in chain order."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for _ in range(n - 1):
        assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    return sql(services, "SELECT lane, seq, event_id FROM audit_chain ORDER BY lane, seq")


def _busiest_lane(rows: list[Any]) -> list[Any]:
    lanes: dict[int, list[Any]] = {}
    for r in rows:
        lanes.setdefault(r.lane, []).append(r)
    return max(lanes.values(), key=len)  # 40 events in 16 lanes: some lane has at least 3


def test_an_intact_trail_verifies(client, services, verify, capsys):
    rows = _trail(client, services)
    code, out = verify(capsys)
    assert code == 0, out
    assert f"intact: {len(rows)} events" in out


def test_altered_content_is_found_and_named(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    victim = lane[1].event_id
    n = sql(services, "UPDATE resource SET content = replace(content, '\"outcome\":\"0\"', '\"outcome\":\"4\"') "
                      "WHERE res_type = 'AuditEvent' AND res_id = :id", id=victim)
    assert n == 1
    code, out = verify(capsys)
    assert code != 0
    assert f"first bad event: AuditEvent/{victim}" in out and "does not match its hash" in out


def test_altered_history_copy_is_found(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    victim = lane[0].event_id
    sql(services, "UPDATE resource_version SET content = replace(content, '\"outcome\":\"0\"', '\"outcome\":\"8\"') "
                  "WHERE res_type = 'AuditEvent' AND res_id = :id", id=victim)
    code, out = verify(capsys)
    assert code != 0 and f"AuditEvent/{victim}" in out and "version history" in out


def test_a_deleted_event_is_found_and_named(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    victim = lane[1].event_id
    sql(services, "DELETE FROM resource WHERE res_type = 'AuditEvent' AND res_id = :id", id=victim)
    sql(services, "DELETE FROM resource_version WHERE res_type = 'AuditEvent' AND res_id = :id", id=victim)
    code, out = verify(capsys)
    assert code != 0 and f"first bad event: AuditEvent/{victim}" in out and "missing" in out


def test_an_event_deleted_with_its_chain_row_leaves_a_gap_that_is_named(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    victim, after = lane[1], lane[2]
    for table in ("resource", "resource_version"):
        sql(services, f"DELETE FROM {table} WHERE res_type = 'AuditEvent' AND res_id = :id", id=victim.event_id)
    sql(services, "DELETE FROM audit_patient WHERE event_id = :id", id=victim.event_id)
    sql(services, "DELETE FROM audit_chain WHERE event_id = :id", id=victim.event_id)
    code, out = verify(capsys)
    assert code != 0
    assert f"first bad event: AuditEvent/{after.event_id} (lane {after.lane}, position {after.seq})" in out
    assert f"position {victim.seq} is missing before it" in out


def test_removing_the_newest_events_of_a_lane_is_found(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    last = lane[-1]
    sql(services, "DELETE FROM audit_chain WHERE event_id = :id", id=last.event_id)
    sql(services, "DELETE FROM resource WHERE res_id = :id", id=last.event_id)
    sql(services, "DELETE FROM resource_version WHERE res_id = :id", id=last.event_id)
    code, out = verify(capsys)
    assert code != 0 and f"lane {last.lane}" in out and "newest events removed" in out


def test_two_swapped_events_are_found_and_the_first_is_named(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    a, b = lane[0], lane[2]
    rows = sql(services, "SELECT res_id, content FROM resource WHERE res_id IN (:a, :b)", a=a.event_id, b=b.event_id)
    content = {r.res_id: r.content for r in rows}
    for table in ("resource", "resource_version"):
        sql(services, f"UPDATE {table} SET content = :c WHERE res_id = :id", c=content[b.event_id], id=a.event_id)
        sql(services, f"UPDATE {table} SET content = :c WHERE res_id = :id", c=content[a.event_id], id=b.event_id)
    code, out = verify(capsys)
    assert code != 0 and f"first bad event: AuditEvent/{a.event_id}" in out


def test_reordered_chain_positions_are_found(client, services, verify, capsys):
    lane = _busiest_lane(_trail(client, services))
    a, b = lane[0], lane[1]
    sql(services, "UPDATE audit_chain SET seq = -1 WHERE lane = :l AND seq = :s", l=a.lane, s=a.seq)
    sql(services, "UPDATE audit_chain SET seq = :s WHERE lane = :l AND seq = :t", l=a.lane, s=a.seq, t=b.seq)
    sql(services, "UPDATE audit_chain SET seq = :t WHERE lane = :l AND seq = -1", l=a.lane, t=b.seq)
    code, out = verify(capsys)
    assert code != 0
    assert f"first bad event: AuditEvent/{b.event_id} (lane {a.lane}, position {a.seq})" in out
    assert "reordered" in out


def test_an_event_inserted_outside_the_chain_is_found(client, services, verify, capsys):
    _trail(client, services, n=3)
    sql(services, "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, content) "
                  "VALUES ('AuditEvent', 'forged', 1, 1, :f, '{}')", f=False)
    code, out = verify(capsys)
    assert code != 0 and "AuditEvent/forged" in out and "not in any chain" in out
