"""Decimal fidelity on the create path: what keeping the client's decimal literals costs.

    .venv/bin/python -m bench.fidelity_bench [--n 300]

Two figures:
- parse + serialise per resource over the official R4 examples and Synthea resources (microseconds): orjson
  alone (what the server did before) and with the literals kept (`service.fhir.decimals`);
- creates through the HTTP API (TestClient, admin token, SQLite in a temporary folder): N Observations whose
  values are written `72.50`-style (so every one takes the exact path), milliseconds per create (p50, mean),
  alternating batches of ten with and without keeping the literals and writing the full-text row.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import orjson

from bench.validation_bench import SHARED

NAME = "fidelity"


def bodies(limit: int = 3000) -> list[bytes]:
    out = [p.read_bytes() for p in sorted((SHARED / "fhir-r4-spec" / "examples").glob("*.json"))]
    for p in sorted((SHARED / "synthea-r4").glob("*.json"))[:3]:
        bundle = orjson.loads(p.read_bytes())
        out += [orjson.dumps(e["resource"]) for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    return out[:limit]


def time_parse(raw: list[bytes], rounds: int = 5) -> tuple[float, float, int]:
    """Mean over the resources of each one's best time (the machine is shared: the best of a few rounds)."""
    from service.fhir.decimals import attach, decimals_of, restore

    def plain(b: bytes) -> None:
        orjson.dumps(orjson.loads(b))

    def exact(b: bytes) -> None:
        parsed = attach(orjson.loads(b), b)
        restore(orjson.dumps(parsed), decimals_of(parsed))

    figures = []
    for fn in (plain, exact):
        best = [float("inf")] * len(raw)
        for _ in range(rounds):
            for k, b in enumerate(raw):
                t0 = time.perf_counter()
                fn(b)
                best[k] = min(best[k], time.perf_counter() - t0)
        figures.append(statistics.fmean(best) * 1e6)
    lossy = sum(1 for b in raw if decimals_of(attach(orjson.loads(b), b)))
    return figures[0], figures[1], lossy


def time_creates(n: int) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient

    import service.fhir.request as request_mod
    import service.search.indexer as indexer_mod
    from service.api.app import create_app
    from service.bootstrap import build_services
    from service.config import load_settings
    from service.fhir.decimals import attach
    from service.migrate import upgrade
    from service.search.fulltext import text_row
    from tests.conftest import make_auth_headers

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = load_settings(database_url=url, base_url="http://testserver", var_dir=Path(tmp),
                                 keys_dir=Path(tmp) / "keys", demo=True, audit_seal_seconds=0, api_rate_per_minute=0)
        services = build_services(settings)
        try:
            app = create_app(settings, services=services)
            headers = {**make_auth_headers(services), "Content-Type": "application/fhir+json"}
            with TestClient(app) as client:
                r = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
                pid = r.json()["id"]
                times: list[float] = []
                off: list[float] = []
                for i in range(n):
                    # every other batch of 10 without the literals and the full-text row (the code as it was
                    # before), so both halves see the same load on a shared machine
                    baseline = (i // 10) % 2 == 1
                    request_mod.attach = (lambda parsed, body: parsed) if baseline else attach
                    indexer_mod.text_row = (lambda resource: None) if baseline else text_row
                    body = (b'{"resourceType":"Observation","status":"final","code":{"coding":[{"system":'
                            b'"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/' + pid.encode()
                            + b'"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":'
                            + f"{60 + i % 40}.{i % 9}0".encode() + b',"unit":"kg","system":'
                            b'"http://unitsofmeasure.org","code":"kg"}}')
                    t0 = time.perf_counter()
                    r = client.post("/fhir/Observation", content=body, headers=headers)
                    (off if baseline else times).append(time.perf_counter() - t0)
                    assert r.status_code == 201, r.text
                request_mod.attach, indexer_mod.text_row = attach, text_row
                return {"p50": statistics.median(times) * 1000, "mean": statistics.fmean(times) * 1000,
                        "p50 before": statistics.median(off) * 1000, "mean before": statistics.fmean(off) * 1000}
        finally:
            services.db.dispose()


def run(args: Any) -> list[str]:
    n = getattr(args, "ops", None) or 300
    raw = bodies()
    plain, exact, lossy = time_parse(raw)
    lines = [(f"parse+serialise: orjson {plain:.1f} us, keeping literals {exact:.1f} us per resource "
              f"({len(raw)} resources, {lossy} with literals a float would rewrite)")]
    c = time_creates(n)
    lines.append(f"create Observation with 2-decimal values: p50 {c['p50']:.2f} ms, mean {c['mean']:.2f} ms; "
                 f"without literals and full-text row (before): p50 {c['p50 before']:.2f} ms, mean "
                 f"{c['mean before']:.2f} ms (alternating batches, {n} creates, SQLite, HTTP via TestClient)")
    return lines


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300)
    a = p.parse_args()
    for line in run(argparse.Namespace(ops=a.n)):
        print(line)
