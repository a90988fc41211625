"""Logs as an operator sees them: `sharedcare serve` writes JSON lines on stderr; a start line says where it
listens and on which database (no password); every FHIR request leaves one line with its id, interaction, type,
status and duration; the client's X-Request-ID (when fit) is the id in the answer, the log and the audit row;
and nothing personal (names, NHS numbers, tokens, bodies, search values) ever reaches the log. SQLite and
PostgreSQL."""

from __future__ import annotations

import json

import httpx

from service.logging import client_request_id, safe_database_url, scrub
from tests.audit.support import sql
from tests.ops.support import log_lines, nhs_number, server_env
from tests.running import running_server

GIVEN, FAMILY = "Zebedee", "Quartermaine-Oddfellow"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def _patient(nhs: str) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"given": [GIVEN], "family": FAMILY}],
            "identifier": [{"system": NHS_SYSTEM, "value": nhs}], "birthDate": "1961-04-12",
            "telecom": [{"system": "phone", "value": "07700 900123"}]}


def test_logs_are_json_lines_with_request_ids_and_no_personal_data(
        demo, settings, services, auth_headers, tmp_path):  # type: ignore[no-untyped-def]
    nhs = nhs_number("918273645")
    admin = auth_headers()
    token = admin["Authorization"].removeprefix("Bearer ")
    home = tmp_path / "srv"
    fhir = {"Content-Type": "application/fhir+json"}
    with running_server(home, server_env(settings), workers=1) as base, httpx.Client(base_url=base, timeout=60) as h:
        created = h.post("/fhir/Patient", json=_patient(nhs), headers={**admin, **fhir, "X-Request-ID": "ops-rid-1"})
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"] == "ops-rid-1"
        pid = created.json()["id"]
        read = h.get(f"/fhir/Patient/{pid}", headers={**admin, "X-Request-ID": "bad id with spaces"})
        assert read.status_code == 200 and FAMILY in read.text
        generated = read.headers["x-request-id"]
        assert generated != "bad id with spaces" and client_request_id(generated) == generated
        too_long = h.get(f"/fhir/Patient/{pid}", headers={**admin, "X-Request-ID": "x" * 65})
        assert too_long.headers["x-request-id"] != "x" * 65
        found = h.get("/fhir/Patient", params={"family": FAMILY, "given": GIVEN}, headers=admin)
        assert found.status_code == 200 and found.json()["total"] == 1
        by_nhs = h.get("/fhir/Patient", params={"identifier": f"{NHS_SYSTEM}|{nhs}"}, headers=admin)
        assert by_nhs.json()["total"] == 1
        duplicate = h.post("/fhir/Patient", json=_patient(nhs), headers={**admin, **fhir})  # same NHS number
        assert duplicate.status_code == 409, duplicate.text
        bad = h.post("/fhir/Patient", headers={**admin, **fhir},
                     json={**_patient(nhs), "identifier": [], "birthDate": f"not a date {FAMILY}"})
        assert bad.status_code == 422
        stolen = h.get(f"/fhir/Patient/{pid}", headers={"Authorization": f"Bearer {token}x"})
        assert stolen.status_code == 401
        assert h.get(f"/fhir/Patient/{pid}", headers={"Authorization": "Bearer " + FAMILY}).status_code == 401
        assert h.get(f"/fhir/{FAMILY}/{nhs}", headers=admin).status_code == 404  # ids in the path: not logged
    lines = log_lines(home)  # (every line is JSON: log_lines fails on anything else)
    text = "\n".join(p.read_text() for p in home.glob("server-*.log"))
    for secret in (GIVEN, FAMILY, nhs, "07700", token, token[-40:], "1961-04-12", "Bearer"):
        assert secret not in text, f"{secret[:12]!r} reached the log"

    start = [ln for ln in lines if ln["msg"].startswith("listening on")]
    assert len(start) == 1
    assert start[0]["listen"].startswith("127.0.0.1:") and start[0]["workers"] == 1
    assert start[0]["database"].split(":", 1)[0] in ("sqlite", "postgresql+psycopg")
    requests = {ln["request_id"]: ln for ln in lines if ln.get("logger") == "sharedcare.request"}
    assert len(requests) == 10
    first = requests["ops-rid-1"]
    assert (first["method"], first["interaction"], first["type"], first["status"]) == ("POST", "create", "Patient",
                                                                                      201)
    assert first["duration_ms"] > 0
    assert requests[generated]["interaction"] == "read" and requests[generated]["status"] == 200
    statuses = sorted(ln["status"] for ln in requests.values())
    assert statuses == [200, 200, 200, 200, 201, 401, 401, 404, 409, 422], statuses
    assert {ln["type"] for ln in requests.values()} == {"Patient", "-"}
    for ln in requests.values():
        assert set(ln) >= {"ts", "level", "request_id", "method", "interaction", "type", "status", "duration_ms"}

    # the client's id is the audit row's (and so the AuditEvent's request entity)
    rows = sql(services, "SELECT interaction, status FROM audit_log WHERE request_id = 'ops-rid-1'")
    assert [tuple(r) for r in rows] == [("create", 201)]
    assert sql(services, f"SELECT count(*) FROM audit_log WHERE request_id = '{generated}'")[0][0] == 1


def test_the_client_request_id_is_the_audit_events_request_entity(client):  # type: ignore[no-untyped-def]
    resp = client.get("/fhir/metadata", headers={"X-Request-ID": "trace-abc.123"})
    assert resp.headers["x-request-id"] == "trace-abc.123"
    resp = client.get("/fhir/Patient", params={"_count": "1"}, headers={"X-Request-ID": "trace-abc.124"})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "trace-abc.124"
    found = client.get("/fhir/AuditEvent", params={"_count": "50"})
    assert found.status_code == 200, found.text
    text = json.dumps(found.json())
    assert "trace-abc.124" in text


def test_request_ids_and_urls_are_made_safe_for_the_log() -> None:
    assert client_request_id("0af7651916cd43dd8448eb211c80319c") == "0af7651916cd43dd8448eb211c80319c"
    assert client_request_id("01HZX3K2:abc/def+g=") == "01HZX3K2:abc/def+g="
    for bad in ("", "a b", "x" * 65, "naïve", "a\nb", '"quoted"', "<script>"):
        assert client_request_id(bad) is None
    assert safe_database_url("postgresql+psycopg://app:s3cret@db.example:5432/care?password=s3cret") == \
        "postgresql+psycopg://app@db.example:5432/care"
    assert safe_database_url("sqlite:////var/lib/sharedcare/sharedcare.db") == \
        "sqlite:////var/lib/sharedcare/sharedcare.db"
    text = ('(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "x"\n'
            "DETAIL:  Key (value)=(9434765919) already exists.\n[SQL: INSERT INTO t VALUES (%(v)s)]\n"
            "[parameters: {'v': 'Quartermaine'}]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    cleaned = scrub(text)
    assert "9434765919" not in cleaned and "Quartermaine" not in cleaned and "[SQL: INSERT" in cleaned
