"""Fault tests: `sharedcare serve` as an operator runs it, in its own process group, against a database the
test may break (a private PostgreSQL instance, bench/load/private_pg.py, or an SQLite file), with tokens signed
by the server's own keys and a small load of acknowledged writes to check afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.running import wait_ready

BIN = Path(sys.executable).parent
FHIR = "application/fhir+json"


def cli(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run([str(BIN / "sharedcare"), *args], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, f"sharedcare {' '.join(args)}: {out.stderr[-2000:]}"
    return out.stdout


def environment(url: str, home: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_DATABASE_URL=url, SHAREDCARE_VAR_DIR=str(home / "var"),
               SHAREDCARE_KEYS_DIR=str(home / "keys"), SHAREDCARE_BASE_URL=f"http://127.0.0.1:{port}",
               SHAREDCARE_DEMO="1", SHAREDCARE_API_RATE_PER_MINUTE="100000000", PYTHONPYCACHEPREFIX=str(home / "pycache"),
               **extra)
    return env


def prepare(env: dict[str, str]) -> None:
    """Migrate and load the demo records and published forms (what `sharedcare db upgrade` and `demo load` write,
    less the demo accounts, whose password hashing costs seconds: tokens are signed and verified without them)."""
    from service.bootstrap import build_services
    from service.demo.loader import load_records
    from service.migrate import upgrade
    from service.workflows.forms import ensure_questionnaires

    Path(env["SHAREDCARE_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(env["SHAREDCARE_DATABASE_URL"])
    services = build_services(_settings(env))
    try:
        load_records(services)
        ensure_questionnaires(services)
    finally:
        services.db.dispose()


def _settings(env: dict[str, str]) -> Any:
    from service.config import load_settings

    return load_settings().model_copy(update={
        "database_url": env["SHAREDCARE_DATABASE_URL"], "var_dir": Path(env["SHAREDCARE_VAR_DIR"]),
        "keys_dir": Path(env["SHAREDCARE_KEYS_DIR"]), "base_url": env["SHAREDCARE_BASE_URL"], "demo": True,
        "audit_seal_seconds": 0})


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def workers(self) -> list[int]:
        """The uvicorn worker processes: the children of the supervising process that hold its listening socket
        (not the resource tracker, a zombie, or any helper process of the service's own)."""
        port = int(self.base.rsplit(":", 1)[1])
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":  # LISTEN
                    inodes.add(f"socket:[{f[9]}]")
        out = subprocess.run(["ps", "-o", "pid=,stat=", "--ppid", str(self.proc.pid)], capture_output=True,
                             text=True, check=False)
        found = []
        for line in out.stdout.splitlines():
            pid, stat = line.split()[:2]
            if stat.startswith("Z"):
                continue
            try:
                fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            except OSError:
                continue
            if fds & inodes:
                found.append(int(pid))
        return found

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(env: dict[str, str], port: int, workers: int = 2) -> Iterator[Server]:
    home = Path(env["SHAREDCARE_VAR_DIR"])
    log = home / f"server-{port}.log"
    sink = log.open("wb")
    proc = subprocess.Popen([str(BIN / "sharedcare"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=sink, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, log)
        yield Server(base, proc, log, env)
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        sink.close()


def headers_for(env: dict[str, str], *users: str) -> dict[str, dict[str, str]]:
    """Bearer headers signed with the server's keys: demo users by name, and "gp-system" (the partner client)."""
    from service.auth import demo as auth_demo
    from service.auth.issue import token_for_identity
    from service.auth.scopes import ScopeSet
    from service.bootstrap import build_services

    services = build_services(_settings(env))
    out = {}
    try:
        known = {u.username: u for u in auth_demo.users()}
        for name in users:
            if name == "gp-system":
                gp = next(c for c in auth_demo.clients() if c.client_id == "gp-system")
                token, _ = services.auth.tokens.access_token(scope=gp.ceiling.grant(ScopeSet(gp.ceiling.resource)),
                                                             client_id=gp.client_id, client=gp, ttl=3600)
            else:
                token = token_for_identity(services, known[name], ttl=3600)
            out[name] = {"Authorization": f"Bearer {token}"}
    finally:
        services.db.dispose()
    return out


def visit(tag: str, patient: str = "pat-pat") -> dict[str, Any]:
    """A partner's transaction: an Encounter and three Observations referring to it, all tagged `tag`."""
    enc = f"urn:uuid:{uuid.uuid4()}"
    ident = [{"system": "urn:sharedcare:test:bundle", "value": tag}]
    subject = {"reference": f"Patient/{patient}"}
    entries = [{"fullUrl": enc, "request": {"method": "POST", "url": "Encounter"},
                "resource": {"resourceType": "Encounter", "status": "finished", "identifier": ident,
                             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                             "subject": subject}}]
    for k in range(3):
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
                        "resource": {"resourceType": "Observation", "status": "final", "identifier": ident,
                                     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                                     "subject": subject, "encounter": {"reference": enc},
                                     "valueQuantity": {"value": 60 + k, "unit": "/min",
                                                       "system": "http://unitsofmeasure.org", "code": "/min"}}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass
class Load:
    """Writers and readers in threads until stopped; what was acknowledged, and every answer that was not."""
    base: str
    headers: dict[str, dict[str, str]]
    acked_bundles: list[str] = field(default_factory=list)      # tags of transactions answered 200
    acked_ids: list[str] = field(default_factory=list)          # Type/id created by them
    acked_requests: list[str] = field(default_factory=list)     # X-Request-Id of acknowledged writes
    failed: list[tuple[float, str, int, dict[str, str], bytes]] = field(default_factory=list)
    ok_after: dict[str, float] = field(default_factory=dict)    # kind -> last time it succeeded
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, kind: str, resp: httpx.Response | None, t: float, exc: str = "") -> bool:
        with self._lock:
            self.sent += 1
            if resp is None:
                self.failed.append((t, kind, 0, {}, exc.encode()))
                return False
            if resp.status_code < 300:
                self.ok_after[kind] = t
                return True
            self.failed.append((t, kind, resp.status_code, dict(resp.headers), resp.content))
            return False

    def _writer(self, n: int) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as c:
            k = 0
            while not self._stop.is_set():
                tag = f"w{n}-{k}-{uuid.uuid4().hex[:8]}"
                k += 1
                try:
                    r = c.post("/fhir", content=orjson.dumps(visit(tag)), headers={
                        **self.headers["gp-system"], "Content-Type": FHIR, "Prefer": "return=minimal"})
                except httpx.HTTPError as exc:
                    self._record("write", None, time.monotonic(), repr(exc))
                    time.sleep(0.2)
                    continue
                if self._record("write", r, time.monotonic()):
                    with self._lock:
                        self.acked_bundles.append(tag)
                        self.acked_requests.append(r.headers["x-request-id"])
                        for e in r.json()["entry"]:
                            t, i = e["response"]["location"].split("/fhir/", 1)[-1].split("/")[:2]
                            self.acked_ids.append(f"{t}/{i}")
                else:
                    time.sleep(0.2)

    def _reader(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as c:
            while not self._stop.is_set():
                try:
                    r = c.get("/fhir/Patient/pat-pat", headers=self.headers["nurse.nina"])
                except httpx.HTTPError as exc:
                    self._record("read", None, time.monotonic(), repr(exc))
                    time.sleep(0.2)
                    continue
                if not self._record("read", r, time.monotonic()):
                    time.sleep(0.2)

    def start(self, writers: int = 3, readers: int = 2) -> Load:
        self._threads = [threading.Thread(target=self._writer, args=(n,), daemon=True) for n in range(writers)]
        self._threads += [threading.Thread(target=self._reader, daemon=True) for _ in range(readers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def is_outcome(body: bytes) -> bool:
    try:
        return bool(orjson.loads(body).get("resourceType") == "OperationOutcome")
    except (orjson.JSONDecodeError, AttributeError):
        return False


def stored(url: str) -> Any:
    """A short-lived SQLAlchemy engine on the database (NullPool)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool)


def check_acknowledged(url: str, load: Load, *, wait_audit: float = 0.0) -> None:
    """Every acknowledged transaction is stored whole (the Encounter and its three Observations), and so is the
    audit row of every acknowledged write (by its X-Request-Id)."""
    from sqlalchemy import bindparam, text

    engine = stored(url)
    try:
        with engine.connect() as conn:
            ids = [k.split("/", 1)[1] for k in load.acked_ids]
            q = text("SELECT res_type || '/' || res_id FROM resource WHERE res_id IN :ids AND NOT deleted"
                     ).bindparams(bindparam("ids", expanding=True))
            present = {r for (r,) in conn.execute(q, {"ids": ids})} if ids else set()
        missing = [k for k in load.acked_ids if k not in present]
        assert not missing, f"{len(missing)} acknowledged resources are missing: {missing[:5]}"
        assert len(load.acked_ids) == 4 * len(load.acked_bundles)
        deadline = time.monotonic() + wait_audit
        while True:
            with engine.connect() as conn:
                qa = text("SELECT request_id FROM audit_log WHERE request_id IN :ids").bindparams(
                    bindparam("ids", expanding=True))
                seen = {r for (r,) in conn.execute(qa, {"ids": load.acked_requests})} if load.acked_requests else set()
            lost = [r for r in load.acked_requests if r not in seen]
            if not lost or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not lost, f"{len(lost)} acknowledged writes have no audit row: {lost[:5]}"
    finally:
        engine.dispose()


def bundles_whole(url: str) -> dict[str, int]:
    """tag -> how many resources of that test transaction are stored (each must be 0 or 4), from the index."""
    from sqlalchemy import text

    engine = stored(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT code, count(*) FROM sp_token WHERE param = 'identifier' "
                                     "AND system = 'urn:sharedcare:test:bundle' GROUP BY code")).all()
    finally:
        engine.dispose()
    return {tag: n for tag, n in rows}
