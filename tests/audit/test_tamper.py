"""`sharedcare audit verify` finds any change to sealed audit rows, even by someone who can write every table
(and set the append-only triggers aside): editing, deleting, reordering, inserting, truncating, and recomputing
the chain without the key. The database itself refuses UPDATE and DELETE."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.cli import main
from service.config import get_settings
from tests.audit.support import patient, sql, tamper


@pytest.fixture
def cli(client, settings, monkeypatch, tmp_path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """`sharedcare audit ...` with the test server's configuration (database, key folder, a fresh anchor file)."""
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SHAREDCARE_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("SHAREDCARE_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("SHAREDCARE_AUDIT_ANCHOR", str(tmp_path / "anchor.jsonl"))
    monkeypatch.setenv("SHAREDCARE_DEMO", "1")  # (as the test server is: its seal key is made on first use)
    get_settings.cache_clear()

    def run(capsys: Any, *args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["audit", *args])
        out = capsys.readouterr()
        return code, out.out + out.err

    yield run
    get_settings.cache_clear()


def _sealed_trail(client: Any, cli: Any, capsys: Any, n: int = 12, pending: int = 0) -> list[Any]:
    """n more audited requests (a create, then reads), sealed with what was `pending`; every row, oldest first."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for _ in range(n - 1):
        assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    code, out = cli(capsys, "seal")
    assert code == 0 and f"sealed {n + pending} audit row(s)" in out, out
    return sql(client.app.state.services, "SELECT seq, outcome, detail FROM audit_log ORDER BY seq")


def _broken(cli: Any, capsys: Any, *words: str) -> str:
    code, out = cli(capsys, "verify", "--all")
    assert code == 1, out
    for w in words:
        assert w in out, out
    return out


def test_an_intact_log_verifies_and_says_what_is_not_sealed_yet(client, cli, capsys):
    rows = _sealed_trail(client, cli, capsys)
    client.get("/fhir/metadata")  # one more row, not sealed yet
    code, out = cli(capsys, "verify")
    assert code == 0, out
    assert f"intact: {len(rows)} sealed rows in 1 seals (1 anchored); 1 newer rows not sealed yet" in out


def test_the_database_refuses_update_and_delete_of_audit_rows(client, services, cli, capsys):
    _sealed_trail(client, cli, capsys, n=2)
    for statement in ("UPDATE audit_log SET outcome = 4", "DELETE FROM audit_log", "UPDATE audit_seal SET count = 0",
                      "DELETE FROM audit_seal"):
        with pytest.raises(DBAPIError, match="append-only"), services.db.write() as conn:
            conn.execute(text(statement))
    assert len(sql(services, "SELECT seq FROM audit_log")) >= 1


def test_an_edited_row_is_found_and_named(client, services, cli, capsys):
    rows = _sealed_trail(client, cli, capsys)
    victim = rows[3].seq
    assert tamper(services, "UPDATE audit_log SET outcome = 4 WHERE seq = :s", s=victim) == 1
    _broken(cli, capsys, f"AuditEvent/{victim} (sealed by seal 1) was altered")


def test_an_edit_with_the_seal_recomputed_without_the_key_is_found(client, services, cli, capsys):
    from service.audit.rows import digest
    from service.audit.seal import chain

    rows = _sealed_trail(client, cli, capsys)
    tamper(services, "UPDATE audit_log SET outcome = 8 WHERE seq = :s", s=rows[2].seq)
    fresh = sql(services, "SELECT * FROM audit_log ORDER BY seq")
    digests = [digest(r) for r in fresh]
    tamper(services, "UPDATE audit_seal SET root = :r, digests = :d WHERE id = 1", r=chain(digests),
           d="".join(x[:16] for x in digests))
    _broken(cli, capsys, "seal 1 does not match its MAC")


def test_a_deleted_row_is_found_and_named(client, services, cli, capsys):
    rows = _sealed_trail(client, cli, capsys)
    tamper(services, "DELETE FROM audit_log WHERE seq = :s", s=rows[5].seq)
    _broken(cli, capsys, f"AuditEvent/{rows[5].seq} (sealed by seal 1) was deleted")


def test_reordered_rows_are_found(client, services, cli, capsys):
    rows = _sealed_trail(client, cli, capsys)
    a, b = rows[0], rows[1]  # the create and a read
    assert a.detail != b.detail
    tamper(services, "UPDATE audit_log SET detail = :d WHERE seq = :s", d=b.detail, s=a.seq)
    tamper(services, "UPDATE audit_log SET detail = :d WHERE seq = :s", d=a.detail, s=b.seq)
    _broken(cli, capsys, f"AuditEvent/{a.seq} (sealed by seal 1) was altered or moved")


def test_an_inserted_row_below_the_newest_seal_is_found(client, services, cli, capsys):
    _sealed_trail(client, cli, capsys)
    tamper(services, "INSERT INTO audit_log (seq, recorded, kind, interaction, action, outcome, detail) "
                     "VALUES (0, 1, 'rest', 'read', 'R', 0, '{}')")
    _broken(cli, capsys, "AuditEvent/0 is older than the newest seal but no seal covers it")


def test_a_row_too_new_for_the_newest_seal_waits_for_the_next_one(client, services, cli, capsys):
    """A row the newest seal passed over because it was younger than the sealer's margin (its transaction took
    its number early and committed late) is pending, not tampering; the next seal covers it."""
    rows = _sealed_trail(client, cli, capsys)
    top = rows[-1][0]
    insert = ("INSERT INTO audit_log (seq, recorded, kind, interaction, action, outcome, detail) "
              "VALUES (:seq, :at, 'rest', 'read', 'R', 0, '{}')")
    sql(services, insert, seq=top + 10, at=1)  # a later row, sealed next
    code, out = cli(capsys, "seal")
    assert code == 0 and "sealed 1 audit row(s)" in out, out
    sealed_at = sql(services, "SELECT max(sealed_at) FROM audit_seal")[0][0]
    sql(services, insert, seq=top + 5, at=sealed_at - 100_000)  # committed just after that seal
    code, out = cli(capsys, "verify", "--all")
    assert code == 0 and "; 1 newer rows not sealed yet" in out, out
    code, out = cli(capsys, "seal")
    assert code == 0 and "sealed 1 audit row(s)" in out, out
    code, out = cli(capsys, "verify", "--all")
    assert code == 0 and "; 0 newer rows not sealed yet" in out, out


def test_a_truncated_log_is_found_through_the_anchor_file(client, services, cli, capsys):
    _sealed_trail(client, cli, capsys, n=4)
    newest = _sealed_trail(client, cli, capsys, n=4)  # a second seal
    top = newest[-1].seq
    tamper(services, "DELETE FROM audit_log WHERE seq > :s", s=top - 4)
    tamper(services, "DELETE FROM audit_seal WHERE id = 2")
    _broken(cli, capsys, "the anchor file holds seal 2 but the newest seal here is 1")


def test_a_removed_seal_in_the_middle_and_a_changed_reach_are_found(client, services, cli, capsys):
    _sealed_trail(client, cli, capsys, n=3)
    for family in ("One", "Two"):
        client.post("/fhir/Patient", json=patient(name=[{"family": family}]))
    client.get("/fhir/Patient?_count=100")
    _sealed_trail(client, cli, capsys, n=2, pending=3)
    also = sql(services, "SELECT patient_id, seq FROM audit_also")
    assert len(also) >= 1  # the search reached several people
    tamper(services, "DELETE FROM audit_also WHERE seq = :s AND patient_id = :p", s=also[0].seq, p=also[0].patient_id)
    tamper(services, "DELETE FROM audit_seal WHERE id = 1")
    out = _broken(cli, capsys, "seals 1..1 are missing", "the people it reached were changed")
    assert f"AuditEvent/{also[0].seq}" in out
