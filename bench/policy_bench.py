"""The cost of the access policy and audit: consented, audited reads and searches versus the same without them,
and a real HTTP read against a bare ASGI app serving the same bytes.

    .venv/bin/python bench/policy_bench.py [--database-url URL] [--patients N] [--requests N] [--rounds N]

1. In process (the real pipeline: authenticate -> route -> guard -> handler -> audit): nurse.nina reads and
   searches the records of patients on her care team, each of whom has a consent on record (an objection to
   another organisation), with the policy guard and audit on, versus the scope guard alone with audit off.
   Rounds alternate so drift affects both. Target (interfaces.md): under 1.5x; goal 1.2x.
2. Over HTTP, one uvicorn worker each, sequential keep-alive requests from one client: `GET /fhir/Patient/{id}`
   with nina's bearer token (authorised, consented, audited) versus a bare Starlette app returning the same
   stored bytes. Target: the read reaches at least half the bare app's requests per second.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAME = "policy"
OBJECTION_PROVISION = {"type": "permit", "provision": [{"type": "deny", "actor": [{
    "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
    "reference": {"reference": "Organization/org-acute-trust"}}]}]}


def _load(services: Any, patients: int, per_patient: int, consented_every: int = 1) -> list[str]:
    """Patients on nina's care team, each with observations; every `consented_every`-th one has an objection
    (a Consent) on record. Returns the consented patients' ids."""
    from service.demo.loader import load_records

    load_records(services)
    consented = []
    with services.db.write() as conn:
        for i in range(patients):
            pid = services.store.create(conn, {
                "resourceType": "Patient", "gender": "female", "name": [{"family": f"Bench{i}", "given": ["Jo"]}],
                "generalPractitioner": [{"reference": "Organization/org-gp-practice"}]}).res_id
            services.store.create(conn, {"resourceType": "CareTeam", "status": "active",
                                         "subject": {"reference": f"Patient/{pid}"},
                                         "participant": [{"member": {"reference": "Practitioner/prac-nina"}}]})
            for j in range(per_patient):
                services.store.create(conn, {"resourceType": "Observation", "status": "final",
                                             "code": {"text": f"obs {j}"}, "valueString": "ok",
                                             "subject": {"reference": f"Patient/{pid}"}})
            if i % consented_every:
                continue
            consented.append(pid)
            services.store.create(conn, {
                "resourceType": "Consent", "status": "active", "dateTime": "2026-01-01T00:00:00Z",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{pid}"},
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                           "code": "OPTOUT"}]},
                "provision": OBJECTION_PROVISION})
    return consented


def _nina(services: Any) -> Any:
    from service.auth import demo as auth_demo
    from service.auth.issue import token_for_identity

    user = next(u for u in auth_demo.users() if u.username == "nurse.nina")
    return token_for_identity(services, user, ttl=3600)


def _time(services: Any, reqs: list[Any]) -> list[float]:
    from service.api.pipeline import handle

    out = []
    for req in reqs:
        t0 = time.perf_counter()
        resp = handle(req, services)
        out.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"benchmark request {req.method} {req.path} failed: {resp.status} {resp.body!r}")
    return out


def in_process(services: Any, token: str, pids: list[str], rounds: int, requests: int, population: str) -> list[str]:
    from service.interactions.request import FhirRequest

    plain = {k: v for k, v in services.extras.items() if not k.startswith(("audit", "policy"))}
    off = replace(services, guard=services.guard.inner, extras=plain)
    policy_only = replace(services, extras=plain)
    audit_only = replace(services, guard=services.guard.inner)
    headers = {"authorization": f"Bearer {token}"}

    def reqs(kind: str) -> list[Any]:
        if kind == "read":
            return [FhirRequest("GET", f"Patient/{pids[i % len(pids)]}", headers=headers) for i in range(requests)]
        return [FhirRequest("GET", "Observation", params=[("subject", f"Patient/{pids[i % len(pids)]}")],
                            headers=headers) for i in range(requests)]

    kinds = {k: reqs(k) for k in ("read", "search")}
    configs = (("off", off), ("policy", policy_only), ("audit", audit_only), ("on", services))
    for rs in kinds.values():
        for _, svc in configs:
            _time(svc, rs[:20])
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for kind, rs in kinds.items():
            for label, svc in configs:
                results.setdefault((kind, label), []).extend(_time(svc, rs))
    lines = [(f"policy+audit cost ({services.db.dialect}; {population}; nurse.nina on every care team, reading and "
              f"searching consented patients; {rounds} rounds x {requests} requests, pipeline in process; medians)")]
    total_on = total_off = 0.0
    for kind in kinds:
        ms = {label: statistics.median(results[(kind, label)]) * 1000 for label, _ in configs}
        total_on += ms["on"]
        total_off += ms["off"]
        lines.append(f"  {kind:7s} scopes only {ms['off']:6.3f} ms | +policy {ms['policy']:6.3f} | +audit "
                     f"{ms['audit']:6.3f} | policy+audit {ms['on']:6.3f} ms   ratio {ms['on'] / ms['off']:5.2f}x")
    lines.append(f"  read+search ratio (medians) {total_on / total_off:5.2f}x  (target < 1.5x, goal 1.2x)")
    return lines


BARE_APP = '''
import os
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
BODY = open(os.environ["BARE_BODY"], "rb").read()
async def read(request):
    return Response(BODY, media_type="application/fhir+json")
app = Starlette(routes=[Route("/fhir/Patient/{id}", read)])
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start")


def _rps(url: str, headers: dict[str, str], n: int) -> tuple[float, float, float]:
    import httpx

    lat = []
    with httpx.Client(headers=headers, timeout=30.0) as c:
        for _ in range(50):
            c.get(url)
        t0 = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            r = c.get(url)
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"{url}: {r.status_code} {r.text[:200]}")
        elapsed = time.perf_counter() - t0
    lat.sort()
    return n / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


def over_http(url: str, tmp: Path, services: Any, token: str, pid: str, requests: int) -> list[str]:
    stored = services.store.current(services.db.engine.connect(), "Patient", pid)
    body = tmp / "patient.json"
    body.write_bytes(stored.content)
    (tmp / "bare_app.py").write_text(BARE_APP)
    env = {**os.environ, "SHAREDCARE_DATABASE_URL": url, "SHAREDCARE_VAR_DIR": str(tmp),
           "SHAREDCARE_KEYS_DIR": str(services.settings.keys_dir), "SHAREDCARE_BASE_URL": "http://127.0.0.1:8000",
           "PYTHONPATH": str(ROOT)}
    real_port, bare_port = _free_port(), _free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
    real = subprocess.Popen([*uvicorn, "--port", str(real_port), "--factory", "service.api.app:create_app"],
                            env=env, cwd=str(ROOT))
    bare = subprocess.Popen([*uvicorn, "--port", str(bare_port), "--app-dir", str(tmp), "bare_app:app"],
                            env={**env, "BARE_BODY": str(body)}, cwd=str(tmp))
    try:
        _wait(f"http://127.0.0.1:{real_port}/healthz", real)
        _wait(f"http://127.0.0.1:{bare_port}/fhir/Patient/x", bare)
        auth = {"Authorization": f"Bearer {token}"}
        rows = []
        for _ in range(2):  # alternate, keep the best of each
            rows.append((_rps(f"http://127.0.0.1:{bare_port}/fhir/Patient/{pid}", {}, requests),
                         _rps(f"http://127.0.0.1:{real_port}/fhir/Patient/{pid}", auth, requests)))
        bare_best = max(r[0] for r in rows)
        real_best = max(r[1] for r in rows)
        return [f"HTTP read, one uvicorn worker each, {requests} sequential keep-alive requests ({services.db.dialect})",
                (f"  bare ASGI app, same bytes           {bare_best[0]:7.0f} req/s   p50 {bare_best[1]:6.2f} ms   "
                 f"p99 {bare_best[2]:6.2f} ms"),
                (f"  authorised, consented, audited read {real_best[0]:7.0f} req/s   p50 {real_best[1]:6.2f} ms   "
                 f"p99 {real_best[2]:6.2f} ms"),
                f"  share of the bare app's rate {real_best[0] / bare_best[0]:5.2f}  (target >= 0.50)"]
    finally:
        for proc in (real, bare):
            proc.terminate()
            proc.wait(timeout=10)


def measure(url: str, tmp: Path, *, patients: int, rounds: int, requests: int, http_requests: int,
            consented_every: int = 10) -> list[str]:
    from service.api.app import build_services
    from service.config import load_settings
    from service.migrate import upgrade

    upgrade(url)
    settings = replace(load_settings(), database_url=url, var_dir=tmp, keys_dir=tmp / "keys",
                       base_url="http://127.0.0.1:8000")
    services = build_services(settings)
    try:
        pids = _load(services, patients, 5, consented_every)
        if services.db.is_postgres:  # statistics, as autovacuum would gather them on a live database
            from sqlalchemy import text

            with services.db.write() as conn:
                conn.execute(text("ANALYZE"))
        token = _nina(services)
        population = f"{patients} patients, {len(pids)} with a consent on record"
        lines = in_process(services, token, pids, rounds, requests, population)
        if http_requests:
            lines += over_http(url, tmp, services, token, pids[0], http_requests)
        return lines
    finally:
        services.db.dispose()


def run(args: Any) -> list[str]:
    """Entry point for bench/run.py (args.backends, args.quick, args.ops)."""
    from bench.store_bench import fresh_database

    lines: list[str] = []
    for backend in args.backends:
        tmp = Path(tempfile.mkdtemp(prefix="policy-bench-"))
        with fresh_database(backend, tmp) as url:
            lines += measure(url, tmp, patients=50 if args.quick else 1000, rounds=2 if args.quick else 5,
                             requests=100 if args.quick else min(args.ops, 500),
                             http_requests=300 if args.quick else 3000)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--database-url", default=None, help="an empty database (default: a temporary SQLite file)")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=300, help="requests of each kind per round (in process)")
    ap.add_argument("--http-requests", type=int, default=3000, help="HTTP requests per server (0: skip)")
    ap.add_argument("--consented-every", type=int, default=10, help="every Nth patient has a consent (1: all)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="policy-bench-"))
    for line in measure(args.database_url or f"sqlite:///{tmp}/bench.db", tmp, patients=args.patients,
                        rounds=args.rounds, requests=args.requests, http_requests=args.http_requests,
                        consented_every=args.consented_every):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
