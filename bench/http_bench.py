"""HTTP under load (wrk -t2 -c32): read, search, create on `sharedcare serve --workers 2` vs reference apps.

A minimal Starlette + psycopg app and a bare Starlette app are measured in the same run as references.

    make bench BENCH_ARGS="--only http [--quick] [--backend sqlite|postgresql|both]"

Per backend: a fresh database (SQLite file, or a new PostgreSQL database dropped afterwards), `sharedcare
db upgrade` and `demo load`, the server on a free port, a token for nurse.nina (on Pat's care team; Pat has
an active Consent). The service and the references (bench/reference_apps.py: the minimal app on PostgreSQL
only, the bare app on both) are all started, then measured one at a time in ROUNDS interleaved rounds (read,
search, create, then each reference; each checked once, warmed up, then timed for the round's share of 10 s,
--quick 3 s; SHAREDCARE_BENCH_HTTP_SECONDS overrides): a shared machine's speed drifts over a run, and a ratio
is only fair between figures taken under the same conditions. Each figure is the median over the rounds; a
ratio is the median of the rounds' own ratios. Targets (docs/interfaces.md, on PostgreSQL): read >= 0.5x the
minimal app's req/s, search >= 0.25x, create >= 0.2x, read p99 < 50 ms; they are reported, never fail the run.
Figures, with every round's, go to var/bench/http-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import wrk
from bench.http_servers import ROOT, cli, free_port, log_errors, serving, stored_content
from bench.search_bench import fresh_database

NAME = "http"
BIN = ROOT / ".venv" / "bin"
OUT = ROOT / "var" / "bench"
TARGETS = {"read": 0.5, "search": 0.25, "create": 0.2}
READ_P99_MS = 50.0
ROUNDS = 3
OBSERVATION = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7",
                                    "display": "Body weight"}]},
               "subject": {"reference": "Patient/pat-pat"}, "effectiveDateTime": "2026-01-15T09:00:00Z",
               "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org",
                                 "code": "kg"}}


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    path: str
    body: bytes | None = None


OPS = [Op("read", "GET", "/fhir/Patient/pat-pat"),
       Op("search", "GET", "/fhir/CarePlan?subject=Patient/pat-pat"),
       Op("create", "POST", "/fhir/Observation", json.dumps(OBSERVATION).encode())]
READ_REF = Op("read", "GET", "/fhir/Patient/pat-pat")


def _log(msg: str) -> None:
    print(f"   {msg}", file=sys.stderr, flush=True)


def _check(base: str, headers: dict[str, str], op: Op) -> None:
    """One request with httpx before timing: 200/201 expected, else fail loudly with the body."""
    resp = httpx.request(op.method, base + op.path, headers=headers, content=op.body, timeout=30)
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"{op.name}: {op.method} {op.path} answered {resp.status_code}: "
                           f"{resp.text[:2000]}")


def _measure(base: str, headers: dict[str, str], op: Op, tmp: Path, label: str, seconds: int,
             warm_up: int = 2) -> wrk.Result:
    if op.body is not None:
        headers = {**headers, "Content-Type": "application/fhir+json"}
    _check(base, headers, op)
    lua = tmp / f"{label.replace(' ', '-')}.lua"
    lua.write_text(wrk.script(headers, op.method, op.body))
    wrk.run(base + op.path, lua, warm_up)  # warm-up, not reported
    result = wrk.run(base + op.path, lua, seconds)
    _log(f"{label}: {result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
         f"non-2xx {result.non_2xx}, socket errors {result.socket_errors}")
    return result


def _prepare(url: str, tmp: Path) -> tuple[list[str], dict[str, str], str, dict[str, str], Path]:
    """Migrate, load the demo: (the serve command, its environment, its base URL, nurse.nina's headers, its log)."""
    port = free_port()
    env = {**os.environ, "SHAREDCARE_DATABASE_URL": url, "SHAREDCARE_DEMO": "1",
           "SHAREDCARE_VAR_DIR": str(tmp), "SHAREDCARE_KEYS_DIR": str(tmp / "keys"),
           "SHAREDCARE_BASE_URL": f"http://127.0.0.1:{port}",
           # one caller at thousands of requests a second: the rate limit runs (its cost is measured) but allows it
           "SHAREDCARE_API_RATE_PER_MINUTE": "100000000"}
    cli([str(BIN / "sharedcare"), "db", "upgrade"], env)
    cli([str(BIN / "sharedcare"), "demo", "load"], env)
    token = cli([str(BIN / "sharedcare"), "token", "--user", "nurse.nina", "--ttl", "3600"], env).strip()
    cmd = [str(BIN / "sharedcare"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    return cmd, env, f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}, tmp / "service.log"


def _service(url: str, tmp: Path, seconds: int) -> tuple[dict[str, wrk.Result], int]:
    """Migrate, load the demo, serve with two workers, time every operation once; also the server log's errors
    (bench/pooler_bench.py)."""
    cmd, env, base, headers, log = _prepare(url, tmp)
    with serving(cmd, env, base + "/healthz", log):
        results = {op.name: _measure(base, headers, op, tmp, op.name, seconds) for op in OPS}
    return results, log_errors(log)


def _start_reference(stack: ExitStack, app: str, env: dict[str, str], tmp: Path) -> str:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "uvicorn"), "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log", f"bench.reference_apps:{app}"]
    stack.enter_context(serving(cmd, {**os.environ, **env}, base + READ_REF.path, tmp / f"{app}.log"))
    return base


def _median(results: list[wrk.Result]) -> wrk.Result:
    """The rounds as one figure: the median round's throughput and latencies, every round's errors."""
    return wrk.Result(requests=sum(r.requests for r in results), seconds=sum(r.seconds for r in results),
                      rps=statistics.median(r.rps for r in results),
                      p50_ms=statistics.median(r.p50_ms for r in results),
                      p99_ms=statistics.median(r.p99_ms for r in results),
                      non_2xx=sum(r.non_2xx for r in results),
                      socket_errors=sum(r.socket_errors for r in results),
                      timeouts=sum(r.timeouts for r in results))


def measure(backend: str, seconds: int) -> dict[str, Any]:
    """Every figure for one backend, as written to var/bench/http-<backend>.json."""
    load = os.getloadavg()[0]  # other work on the machine skews every figure: say so
    per_round = max(2, round(seconds / 2))
    rounds: dict[str, list[wrk.Result]] = {}
    with tempfile.TemporaryDirectory(prefix="sc-http-bench-") as name, \
            fresh_database(backend, Path(name)) as url:
        tmp = Path(name)
        _log(f"{backend}: serving {url.split('@')[-1]}")
        cmd, env, base, headers, log = _prepare(url, tmp)
        body = tmp / "pat-pat.json"
        body.write_bytes(stored_content(url))
        with ExitStack() as stack:
            stack.enter_context(serving(cmd, env, base + "/healthz", log))
            refs = {"bare": _start_reference(stack, "bare", {"BENCH_REF_BODY": str(body)}, tmp)}
            if backend == "postgresql":
                from sqlalchemy.engine import make_url

                dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
                refs["minimal"] = _start_reference(stack, "minimal", {"BENCH_REF_DSN": dsn}, tmp)
            for r in range(1, ROUNDS + 1):
                for op in OPS:
                    rounds.setdefault(op.name, []).append(
                        _measure(base, headers, op, tmp, f"{op.name} round {r}", per_round, 2 if r == 1 else 1))
                for app, ref_base in refs.items():
                    rounds.setdefault(f"reference {app}", []).append(
                        _measure(ref_base, {}, READ_REF, tmp, f"reference {app} round {r}", per_round,
                                 2 if r == 1 else 1))
        log_error_lines = log_errors(log)
    minimal = rounds.get("reference minimal")
    bare = rounds["reference bare"]
    figures: dict[str, Any] = {
        "backend": backend, "seconds": per_round * ROUNDS, "rounds": ROUNDS, "threads": 2, "connections": 32,
        "server_workers": 2, "cpus": os.cpu_count(), "machine": platform.platform(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_1min_before": load,
        "service_log_error_lines": log_error_lines,
        "references": {k.removeprefix("reference "): {**_median(v).as_dict(), "rounds": [x.as_dict() for x in v]}
                       for k, v in rounds.items() if k.startswith("reference ")},
        "operations": {}}
    for op in OPS:
        runs = rounds[op.name]
        row: dict[str, Any] = {**_median(runs).as_dict(), "rounds": [x.as_dict() for x in runs]}
        if minimal is not None:
            row["x_minimal_rounds"] = [a.rps / b.rps if b.rps else 0.0 for a, b in zip(runs, minimal, strict=True)]
            row["x_minimal"] = statistics.median(row["x_minimal_rounds"])
            row["target_x_minimal"] = TARGETS[op.name]
            row["pass_x_minimal"] = row["x_minimal"] >= TARGETS[op.name]
        row["x_bare"] = statistics.median(a.rps / b.rps if b.rps else 0.0 for a, b in zip(runs, bare, strict=True))
        if op.name == "read":
            row["target_p99_ms"] = READ_P99_MS
            row["pass_p99"] = row["p99_ms"] < READ_P99_MS
        figures["operations"][op.name] = row
    return figures


def _figures(r: dict[str, Any]) -> str:
    return (f"{r['rps']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['non_2xx']:8d} "
            f"{r['socket_errors']:8d}")


def table(f: dict[str, Any]) -> list[str]:
    b = f["backend"]
    title = (f"{b}: wrk -t{f['threads']} -c{f['connections']} against `sharedcare serve --workers "
             f"{f['server_workers']}` as nurse.nina, {f['rounds']} interleaved rounds, {f['seconds']}s per operation "
             f"in all; medians ({f['cpus']} CPUs shared by wrk and servers; load average "
             f"{f['loadavg_1min_before']:.1f} before the run)")
    header = (f"{b:10s} {'operation':18s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s} "
              f"{'sock err':>8s} {'x minimal':>9s} {'x bare':>7s}  targets")
    lines = [title, header]
    for name, r in f["operations"].items():
        targets = []
        if "x_minimal" in r:
            targets.append(f">= {r['target_x_minimal']:.2f}x {'PASS' if r['pass_x_minimal'] else 'FAIL'}")
        if "pass_p99" in r:
            targets.append(f"p99 < {r['target_p99_ms']:.0f} ms {'PASS' if r['pass_p99'] else 'FAIL'}")
        ratio = f"{r['x_minimal']:8.2f}x" if "x_minimal" in r else f"{'-':>9s}"
        row = f"{b:10s} {name:18s} {_figures(r)} {ratio} {r['x_bare']:6.3f}x  {'; '.join(targets)}"
        lines.append(row.rstrip())
    for name, r in f["references"].items():
        lines.append(f"{b:10s} {'reference ' + name:18s} {_figures(r)}")
    if f["service_log_error_lines"]:
        lines.append(f"{b:10s} the service logged {f['service_log_error_lines']} error lines during the run")
    if "minimal" not in f["references"]:
        lines.append(f"{b:10s} (ratio targets are against the minimal app on PostgreSQL: that run only)")
    return lines


def run(args: argparse.Namespace) -> list[str]:
    wrk.ensure_wrk()
    seconds = int(os.environ.get("SHAREDCARE_BENCH_HTTP_SECONDS", "3" if args.quick else "10"))
    lines: list[str] = []
    for backend in args.backends:
        figures = measure(backend, seconds)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"http-{backend}.json").write_text(json.dumps(figures, indent=2) + "\n")
        lines += table(figures) + [f"{backend:10s} figures written to {OUT / f'http-{backend}.json'}"]
    return lines


if __name__ == "__main__":
    from bench.run import main

    sys.exit(main(["--only", NAME, *sys.argv[1:]]))
