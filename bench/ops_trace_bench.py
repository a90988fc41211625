"""What tracing costs per request: `python -m bench.ops_trace_bench [--backend sqlite|postgresql] [--requests N]
[--before DIR] [--sampler NAME[:ARG]]`.

Sequential requests (a consented point read, a care-plan search, a create) as nurse.nina against `sharedcare
serve` processes on one database, alternated between them so all see the same machine load:
- `off`: tracing off (the default);
- `on`: SHAREDCARE_TRACING=otlp, exporting over OTLP/HTTP to a sink in this process that counts what it gets;
- `before` (with --before DIR: the service's source tree as it was before tracing, e.g.
  `git archive 41032a7 | tar -x -C DIR`): the same server without any of it.
Prints the median of each operation on each server, and the differences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.http_servers import cli, free_port, serving
from bench.search_bench import fresh_database

OBSERVATION = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
               "subject": {"reference": "Patient/pat-pat"}, "effectiveDateTime": "2026-01-15T09:00:00Z",
               "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
OPS = {"read": ("GET", "/fhir/Patient/pat-pat", None),
       "search": ("GET", "/fhir/CarePlan?subject=Patient/pat-pat", None),
       "create": ("POST", "/fhir/Observation", json.dumps(OBSERVATION).encode())}


def _serve_cmd(port: int, source: Path | None) -> list[str]:
    if source is None:
        return [str(Path(sys.executable).parent / "sharedcare"), "serve", "--port", str(port)]
    boot = f"import sys; sys.path.insert(0, {str(source)!r}); from service.cli import main; sys.exit(main())"
    return [sys.executable, "-c", boot, "serve", "--port", str(port)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ops_trace_bench")
    p.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--requests", type=int, default=1000, help="timed requests per operation and server")
    p.add_argument("--before", type=Path, default=None, help="the source tree before tracing, served as `before`")
    p.add_argument("--sampler", default=None, help="OTEL_TRACES_SAMPLER[:ARG] for `on` (default: every trace)")
    args = p.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="sc-tracebench-"))  # (kept: the servers' logs)
    with fresh_database(args.backend, home) as url:
        times, servers, posts = _measure(args, home, url)
    print(f"{args.backend}, sequential, {args.requests} of each per server, alternated; `on` sampler "
          f"{args.sampler or 'parentbased_always_on'}; load average {os.getloadavg()[0]:.1f} at the end; OTLP posts "
          f"received from `on`: {posts}; the servers' logs (duration_ms) in {home}")
    print(f"{'operation':10}" + "".join(f"{label + ' median ms':>18}" for label in servers)
          + f"{'on - off us':>14}" + (f"{'off - before us':>18}" if "before" in servers else ""))
    for op in OPS:
        med = {s: statistics.median(times[(op, s)]) for s in servers}
        line = f"{op:10}" + "".join(f"{med[s] * 1e3:>18.3f}" for s in servers)
        line += f"{(med['on'] - med['off']) * 1e6:>+14.0f}"
        if "before" in servers:
            line += f"{(med['off'] - med['before']) * 1e6:>+18.0f}"
        print(line)
    return 0


def _measure(args: argparse.Namespace, home: Path, url: str
             ) -> tuple[dict[tuple[str, str], list[float]], list[str], int]:
    from tests.ops.otlp_receiver import Receiver

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHAREDCARE_", "OTEL_"))}
    env.update(SHAREDCARE_DATABASE_URL=url, SHAREDCARE_VAR_DIR=str(home), SHAREDCARE_DEMO="1",
               SHAREDCARE_BASE_URL="http://127.0.0.1:1", SHAREDCARE_API_RATE_PER_MINUTE="1000000",
               SHAREDCARE_AUDIT_SEAL_SECONDS="0")
    exe = str(Path(sys.executable).parent / "sharedcare")
    cli([exe, "db", "upgrade"], env)
    cli([exe, "demo", "load"], env)
    token = cli([exe, "token", "--user", "nurse.nina"], env).strip()
    sink = Receiver(decode=False)
    traced = {"SHAREDCARE_TRACING": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
    if args.sampler:
        name, _, arg = args.sampler.partition(":")
        traced.update(OTEL_TRACES_SAMPLER=name, **({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {}))
    servers: dict[str, tuple[dict[str, str], Path | None]] = {"off": ({}, None), "on": (traced, None)}
    if args.before is not None:
        servers["before"] = ({}, args.before.resolve())
    ports = {label: free_port() for label in servers}
    times: dict[tuple[str, str], list[float]] = {(op, s): [] for op in OPS for s in servers}
    with sink, httpx.Client(timeout=30) as h, ExitStack() as stack:
        for label, (extra, source) in servers.items():
            stack.enter_context(serving(_serve_cmd(ports[label], source), {**env, **extra},
                                        f"http://127.0.0.1:{ports[label]}/readyz", home / f"{label}.log"))
        hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        for op, (method, path, body) in OPS.items():
            for i in range((args.requests + 100) * len(servers)):
                label = list(servers)[i % len(servers)]
                t0 = time.perf_counter()
                r = h.request(method, f"http://127.0.0.1:{ports[label]}{path}", headers=hdr, content=body)
                dt = time.perf_counter() - t0
                if r.status_code >= 300:
                    raise RuntimeError(f"{op} on {label} answered {r.status_code}: {r.text[:300]}")
                if i >= 100 * len(servers):  # (warm-up)
                    times[(op, label)].append(dt)
        time.sleep(1)
    return times, list(servers), sink.posts


if __name__ == "__main__":
    sys.exit(main())
