"""Behind pgbouncer in transaction mode, as an operator deploys it: Debian's pgbouncer on a free loopback port with
`pool_mode = transaction` and three server connections for the whole service (`sharedcare serve --workers 2`
opens many more client connections, so every server connection is shared between client sessions), the service
told so (`SHAREDCARE_DATABASE_POOLER=transaction`), migrations straight to PostgreSQL. Under concurrent creates,
updates with If-Match, reads, paged searches, conditional creates and an export: no errors, every version right,
every request audited once, `sharedcare audit seal` and `audit verify` through the pooler, and the statement
timeout still stops a write and a search, and every change reaches a rest-hook subscriber. PostgreSQL only."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from bench.load.pgbouncer import PgBouncer, binary
from tests.conftest import PG_ADMIN_URL, SKIP_PG
from tests.ops.support import log_lines
from tests.running import SHAREDCARE, running_server
from tests.subscriptions.receiver import Receiver

pytestmark = pytest.mark.skipif(SKIP_PG, reason="PostgreSQL only (SHAREDCARE_TEST_SKIP_POSTGRES=1)")

POOL_SIZE = 3  # server connections for the whole service: fewer than one process's pool
TIMEOUT_S = 5  # the statement timeout: the role's default, and the service's setting alike
BASE = "http://testserver"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
FHIR = {"Content-Type": "application/fhir+json"}
IDENT = "https://example.org/pgbouncer-test"


def observation(n: int, status: str = "preliminary") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": status, "subject": {"reference": "Patient/pat-pat"},
            "identifier": [{"system": IDENT, "value": f"obs-{n}"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": 60 + n, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """A fresh database (name, direct URL) whose role default statement_timeout is TIMEOUT_S, as the README asks."""
    admin = make_url(PG_ADMIN_URL)
    name = f"sc_pgb_{uuid.uuid4().hex[:10]}"
    conninfo = f"host={admin.host} port={admin.port or 5432} user={admin.username} dbname={admin.database}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'ALTER ROLE "{admin.username}" IN DATABASE "{name}" SET statement_timeout = \'{TIMEOUT_S}s\'')
    try:
        yield name, admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    if binary() is None:
        pytest.skip("pgbouncer is not installed and could not be (`make pgbouncer` installs the Debian package)")
    admin = make_url(PG_ADMIN_URL)
    with PgBouncer(admin.host or "127.0.0.1", admin.port or 5432, pool_size=POOL_SIZE) as bouncer:
        yield bouncer
    assert bouncer.stopped


def held(direct: str, statement: str, request: Any) -> httpx.Response:
    """`request()` while another session, straight to PostgreSQL, holds the lock `statement` takes."""
    with psycopg.connect(direct.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute(statement)
        return request()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    full.update(env)
    done = subprocess.run([SHAREDCARE, *args], env=full, capture_output=True, text=True, timeout=300, check=False)
    return done


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The GP system's notification endpoint."""
    rx = Receiver()
    yield rx
    rx.close()


def test_the_service_behind_pgbouncer_in_transaction_mode(database, pgbouncer, receiver, tmp_path):  # type: ignore[no-untyped-def]
    name, direct = database
    var = tmp_path / "var"
    env = {"SHAREDCARE_DATABASE_URL": pgbouncer.url(name), "SHAREDCARE_DATABASE_POOLER": "transaction",
           "SHAREDCARE_BASE_URL": BASE, "SHAREDCARE_DEMO": "1", "SHAREDCARE_VAR_DIR": str(var),
           "SHAREDCARE_KEYS_DIR": str(var / "keys"), "SHAREDCARE_AUDIT_ANCHOR": str(tmp_path / "anchor.jsonl"),
           "SHAREDCARE_AUDIT_SEAL_SECONDS": "1", "SHAREDCARE_STATEMENT_TIMEOUT_SECONDS": str(TIMEOUT_S),
           "SHAREDCARE_EXPORT_POLL_SECONDS": "0.2", "SHAREDCARE_API_RATE_PER_MINUTE": "100000",
           "SHAREDCARE_SUBSCRIPTION_POLL_SECONDS": "0.1", "SHAREDCARE_SUBSCRIPTION_RETRY_SECONDS": "0.3"}
    # migrations straight to PostgreSQL (as the README says operators run them); everything else through pgbouncer
    for args, where in ((["db", "upgrade"], {"SHAREDCARE_DATABASE_URL": direct,
                                              "SHAREDCARE_DATABASE_POOLER": "none"}), (["demo", "load"], {})):
        done = _cli(args, {**env, **where})
        assert done.returncode == 0, done.stderr[-3000:]
    tokens = {}
    for who in (["--user", "nurse.nina"], ["--client", "gp-system"]):
        done = _cli(["token", *who, "--ttl", "3600"], env)
        assert done.returncode == 0, done.stderr[-3000:]
        tokens[who[1]] = {"Authorization": f"Bearer {done.stdout.strip()}"}
    nina, gp = tokens["nurse.nina"], tokens["gp-system"]

    home = tmp_path / "server"
    with running_server(home, env, workers=2) as server, httpx.Client(base_url=server, timeout=60) as http:
        answers: list[httpx.Response] = []

        def send(method: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
            content = json.dumps(body).encode() if body is not None else None
            r = http.request(method, path, headers={**headers, **(FHIR if content else {})}, content=content)
            answers.append(r)
            return r

        def chain(n: int) -> tuple[str, list[str]]:
            """Create an Observation, read it, update it twice with If-Match, search for it: the versions seen."""
            made = send("POST", "/fhir/Observation", nina, observation(n))
            assert made.status_code == 201, made.text
            oid, seen = made.json()["id"], [made.json()["meta"]["versionId"]]
            for status in ("final", "amended"):
                current = send("GET", f"/fhir/Observation/{oid}", nina)
                assert current.status_code == 200, current.text
                etag = current.headers["etag"]
                r = send("PUT", f"/fhir/Observation/{oid}", {**nina, "If-Match": etag},
                         {**current.json(), "status": status})
                assert r.status_code == 200, r.text
                seen.append(r.json()["meta"]["versionId"])
            stale = send("PUT", f"/fhir/Observation/{oid}", {**nina, "If-Match": 'W/"1"'},
                         {**observation(n, "final"), "id": oid})
            assert stale.status_code == 412, stale.text
            found = send("GET", f"/fhir/Observation?identifier={IDENT}|obs-{n}", nina)
            assert found.status_code == 200 and [e["resource"]["id"] for e in found.json()["entry"]] == [oid]
            assert send("GET", "/fhir/Patient/pat-pat", nina).status_code == 200
            return oid, seen

        def conditional() -> list[tuple[int, str]]:
            """Conditional creates of 4 identifiers, twice over (one after the other: concurrent conditional creates
            of one identifier are not serialised by the server, pooler or not)."""
            out = []
            for n in range(8):
                r = send("POST", "/fhir/Observation", {**nina, "If-None-Exist": f"identifier={IDENT}|cond-{n % 4}"},
                         {**observation(n), "identifier": [{"system": IDENT, "value": f"cond-{n % 4}"}]})
                assert r.status_code in (200, 201), r.text
                out.append((r.status_code, r.json()["id"]))
            return out

        # one observation stored before the export begins (the export holds what was committed before it began;
        # what the threads below write while it runs may or may not be in it)
        before = send("POST", "/fhir/Observation", nina,
                      {k: v for k, v in observation(99, "final").items() if k != "identifier"})
        assert before.status_code == 201, before.text
        # the GP system subscribes to Pat's observations (every change notified, by the servers' delivery workers)
        sub = send("POST", "/fhir/Subscription", gp, {
            "resourceType": "Subscription", "status": "requested", "reason": "Keep the GP system in step",
            "criteria": "Observation?subject=Patient/pat-pat",
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"}})
        assert sub.status_code == 201 and sub.json()["status"] == "active", sub.text
        # an export running while the rest goes on
        kick = send("GET", "/fhir/$export?_type=Patient,Observation", {**gp, **ASYNC})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["content-location"].replace(BASE, server)
        with ThreadPoolExecutor(12) as pool:
            conds = pool.submit(conditional)
            chains_done = list(pool.map(chain, range(24)))
            conds_done = conds.result()
        for oid, seen in chains_done:
            assert seen == ["1", "2", "3"], (oid, seen)
            hist = send("GET", f"/fhir/Observation/{oid}/_history", nina)
            assert [e["resource"]["meta"]["versionId"] for e in hist.json()["entry"]] == ["3", "2", "1"]
        assert [code for code, _ in conds_done] == [201] * 4 + [200] * 4
        assert [oid for _, oid in conds_done[4:]] == [oid for _, oid in conds_done[:4]]  # found, not made again

        # paging through a search: every page, every Observation once
        page = send("GET", f"/fhir/Observation?subject=Patient/pat-pat&identifier={IDENT}|&_count=5", nina)
        paged: list[str] = []
        while True:
            assert page.status_code == 200, page.text
            paged += [e["resource"]["id"] for e in page.json().get("entry", [])]
            nxt = [link["url"] for link in page.json()["link"] if link["relation"] == "next"]
            if not nxt:
                break
            page = send("GET", nxt[0].replace(BASE, server), nina)
        assert len(paged) == len(set(paged)) == 24 + 4

        # the export finishes, through the pooler, and its files hold what the client may see
        deadline = time.monotonic() + 120
        while (r := http.get(status_url, headers=gp)).status_code == 202:
            assert time.monotonic() < deadline, "the export did not finish"
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        exported: dict[str, list[str]] = {}
        for f in r.json()["output"]:
            served = http.get(f["url"].replace(BASE, server), headers=gp)
            assert served.status_code == 200, served.text
            exported.setdefault(f["type"], []).extend(json.loads(x)["id"] for x in served.content.splitlines())
        assert "pat-pat" in exported["Patient"]
        assert before.json()["id"] in exported["Observation"]
        assert len(exported["Observation"]) == len(set(exported["Observation"]))

        # the server connections really were shared: more client connections than server connections
        clients = [c for c in pgbouncer.admin("SHOW CLIENTS") if c["database"] == name]
        servers = [s for s in pgbouncer.admin("SHOW SERVERS") if s["database"] == name]
        assert len(servers) <= POOL_SIZE < len(clients), (len(servers), len(clients))

        # the statement timeout (the role's default) still bounds a write and a search
        oid = chains_done[0][0]
        current = http.get(f"/fhir/Observation/{oid}", headers=nina).json()
        r = held(direct, f"SELECT 1 FROM resource WHERE res_type = 'Observation' AND res_id = '{oid}' FOR UPDATE",
                 lambda: http.put(f"/fhir/Observation/{oid}", headers={**nina, **FHIR}, content=json.dumps(current)))
        assert r.status_code == 503 and f"within {TIMEOUT_S} s" in r.text, r.text
        r = held(direct, "LOCK TABLE resource IN ACCESS EXCLUSIVE MODE",
                 lambda: http.get("/fhir/Observation?code=29463-7&_count=5", headers=nina))
        assert r.status_code == 400 and f"{TIMEOUT_S}-second limit" in r.text, r.text
        assert http.get(f"/fhir/Observation/{oid}", headers=nina).json()["meta"]["versionId"] == "3"

        # every change notified: each version of each Observation written (at least once)
        changes = {(oid, v) for oid, seen in chains_done for v in seen} | {(oid, "1") for _, oid in conds_done[:4]}
        deadline = time.monotonic() + 60
        while not changes <= (notified := {(json.loads(x.body)["id"], json.loads(x.body)["meta"]["versionId"])
                                           for x in receiver.wait(len(changes), 1)}):
            assert time.monotonic() < deadline, sorted(changes - notified)[:5]

        # not one request failed for the pooler
        unexpected = [(r.request.method, r.request.url.path, r.status_code) for r in answers
                      if r.status_code >= 500 or r.status_code in (400, 409)]
        assert not unexpected, unexpected
        request_ids = [r.headers["x-request-id"] for r in answers]

    logged = log_lines(home)
    assert not [x for x in logged if x.get("level") in ("error", "critical")], logged[-20:]
    warned = [x["msg"] for x in logged if x.get("level") == "warning"]
    assert all(m.startswith("statement timeout on ") for m in warned), warned  # (only the two provoked below)
    assert not [x for x in logged if "statement timeout of reads" in x.get("msg", "")]  # the role default matches

    # a service asking for another limit than the role's: it says so, and bounds its writes itself (SET LOCAL)
    other = tmp_path / "other"
    with running_server(other, {**env, "SHAREDCARE_STATEMENT_TIMEOUT_SECONDS": "1"}, workers=1) as server, \
            httpx.Client(base_url=server, timeout=60) as http:
        current = http.get(f"/fhir/Observation/{oid}", headers=nina).json()
        started = time.monotonic()
        r = held(direct, f"SELECT 1 FROM resource WHERE res_type = 'Observation' AND res_id = '{oid}' FOR UPDATE",
                 lambda: http.put(f"/fhir/Observation/{oid}", headers={**nina, **FHIR}, content=json.dumps(current)))
        assert r.status_code == 503 and "within 1 s" in r.text, r.text
        assert time.monotonic() - started < TIMEOUT_S - 1  # (its own second, not the role's five)
    warned = [x["msg"] for x in log_lines(other) if "statement timeout of reads" in x.get("msg", "")]
    assert warned and "ALTER ROLE" in warned[0] and "1000" in warned[0], warned

    # the audit log: sealed through the pooler, intact, every request there exactly once
    sealed = _cli(["audit", "seal"], env)
    assert sealed.returncode == 0, sealed.stderr[-3000:]
    verify = _cli(["audit", "verify", "--all"], env)
    assert verify.returncode == 0 and "audit log intact" in verify.stdout, verify.stdout + verify.stderr[-3000:]
    with psycopg.connect(direct.replace("postgresql+psycopg", "postgresql")) as conn:
        rows = conn.execute("SELECT request_id, count(*) FROM audit_log WHERE request_id = ANY(%s) GROUP BY 1",
                            (request_ids,)).fetchall()
    assert len(rows) == len(request_ids) and all(n == 1 for _, n in rows)
