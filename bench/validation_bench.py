"""Validation on the create path: the cost of checking a resource before it is stored.

    .venv/bin/python -m bench.validation_bench [--n 300]     (or: python -m bench.run --only validation)

Two figures, both on SQLite in a temporary folder:
- validation alone over the official R4 examples and Synthea resources (microseconds per resource), before
  (the fhir.resources R4B models and the profile rules, as the write path ran until the one pass replaced
  them) and after (`validate_resource`: the one pass, its invariants and required bindings, the profile rules),
  per resource the fastest of several alternating tries (robust on a busy machine);
- creates through the HTTP API (TestClient, admin token): a Patient, then N Observations referring to it and
  N Patients, milliseconds per create (p50, mean), so the reference check is in the figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "validation"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.exists():
    SHARED = Path("/work/shared/data")


def corpus(limit: int = 2000) -> list[dict[str, Any]]:
    out = [json.loads(p.read_text()) for p in sorted((SHARED / "fhir-r4-spec" / "examples").glob("*.json"))
           if p.name != "Questionnaire-qs1.json" and not p.name.startswith("Consent-")]
    for p in sorted((SHARED / "synthea-r4").glob("*.json"))[:3]:
        bundle = json.loads(p.read_text())
        out += [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    return out[:limit]


def _before(resource: dict[str, Any]) -> None:
    """The write path's validation before the one pass: the R4B models, then the profile rules."""
    from fhir_profiles.rules import profile_issues
    from service.fhir.validation import check_shape, model_issues

    check_shape(resource)
    model_issues(resource)
    profile_issues(resource)


def time_validate(resources: list[dict[str, Any]], rounds: int = 7) -> dict[str, float]:
    """Microseconds per resource: for each resource the fastest of `rounds` tries of the old and of the new path,
    alternating (so a busy machine's spikes touch both alike and the minimum filters them out), summed."""
    from service.fhir.validation import validate_resource

    def now(r: dict[str, Any]) -> None:
        try:
            validate_resource(r)
        except Exception:  # noqa: BLE001,S110 (invalid ones cost time too; only time matters here)
            pass

    paths = {"before (R4B models + profile rules)": _before, "after (one pass + profile rules)": now}
    total = dict.fromkeys(paths, 0.0)
    for r in resources:
        best = dict.fromkeys(paths, float("inf"))
        for f in paths.values():  # warm
            f(r)
        for _ in range(rounds):
            for name, f in paths.items():
                t0 = time.perf_counter()
                f(r)
                best[name] = min(best[name], time.perf_counter() - t0)
        for name in paths:
            total[name] += best[name]
    return {k: v / len(resources) * 1e6 for k, v in total.items()}


def time_creates(n: int) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.bootstrap import build_services
    from service.config import load_settings
    from service.migrate import upgrade
    from tests.conftest import make_auth_headers

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # (workers may still write there)
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = load_settings(database_url=url, base_url="http://testserver", var_dir=Path(tmp),
                                 keys_dir=Path(tmp) / "keys", demo=True, audit_seal_seconds=0, api_rate_per_minute=0)
        services = build_services(settings)
        try:
            app = create_app(settings, services=services)
            headers = {**make_auth_headers(services), "Content-Type": "application/fhir+json"}
            with TestClient(app) as client:
                r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"},
                                headers=headers)
                assert r.status_code == 201, r.text
                pid = r.json()["id"]
                figures: dict[str, float] = {}
                for label, body in (
                    ("Observation", lambda i: {
                        "resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                        "subject": {"reference": f"Patient/{pid}"},
                        "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-02"},
                        "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org",
                                          "code": "/min"}}),
                    ("Patient", lambda i: {
                        "resourceType": "Patient", "gender": "male", "birthDate": "1950-01-01",
                        "name": [{"family": f"Bench{i}", "given": ["A"]}],
                        "text": {"status": "generated", "div": f"<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                                             f"<p>Bench {i}</p></div>"}}),
                ):
                    times = []
                    for i in range(n):
                        t0 = time.perf_counter()
                        r = client.post(f"/fhir/{label}", json=body(i), headers=headers)
                        times.append(time.perf_counter() - t0)
                        assert r.status_code == 201, r.text
                    figures[f"{label} p50"] = statistics.median(times) * 1000
                    figures[f"{label} mean"] = statistics.fmean(times) * 1000
                return figures
        finally:
            services.db.dispose()


def run(args: Any) -> list[str]:
    n = getattr(args, "ops", None) or 300
    n = min(n, 300) if getattr(args, "quick", False) else n
    resources = corpus()
    lines = [f"validation {k}: {v:.0f} us per resource over {len(resources)} resources"
             for k, v in time_validate(resources).items()]
    for k, v in time_creates(n).items():
        lines.append(f"create {k}: {v:.2f} ms ({n} creates, SQLite, HTTP via TestClient)")
    return lines


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300)
    a = p.parse_args()
    for line in run(argparse.Namespace(ops=a.n, quick=False)):
        print(line)
