"""Schemathesis against the running server, from its own /openapi.json (the FHIR API as the CapabilityStatement
describes it), with an administrator's token: for the record's core types and the system endpoints, a bounded
number of generated requests per operation, valid (positive) and invalid (negative) by the schema. No answer may be
a 5xx, and every error (4xx) must be an OperationOutcome."""

from __future__ import annotations

import collections
import os
from typing import Any

import httpx
import pytest

from tests.faults.support import environment, headers_for, is_outcome, prepare, serving
from tests.running import free_port

schemathesis = pytest.importorskip("schemathesis")

TYPES = "Patient|Observation|CarePlan|QuestionnaireResponse|Consent|AuditEvent"
PATHS = rf"^/fhir/({TYPES})(/|$)|^/fhir$|^/fhir/_history$|^/fhir/metadata$"
EXAMPLES = int(os.environ.get("SHAREDCARE_FUZZ_EXAMPLES", "2"))  # per operation and mode (more: slower)


def test_generated_requests_never_get_a_5xx_and_errors_are_operation_outcomes(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    port = free_port()
    env = environment(f"sqlite:///{tmp_path / 'var' / 'sc.db'}", tmp_path, port)
    prepare(env)
    auth = headers_for(env, "admin.ada")["admin.ada"]
    problems: list[str] = []
    seen: collections.Counter[int] = collections.Counter()
    with serving(env, port, workers=1) as server:
        spec = httpx.get(f"{server.base}/openapi.json", timeout=60).json()
        schema = schemathesis.openapi.from_dict(spec).include(path_regex=PATHS)
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) > 40, len(operations)

        def check(case: Any) -> None:
            try:
                resp = case.call(base_url=server.base, headers=auth, timeout=30)
            except Exception as exc:  # (a request the client itself refuses to send is no answer)
                if "Invalid" in type(exc).__name__ or "Header" in str(exc):
                    return
                raise
            seen[resp.status_code] += 1
            label = f"{case.method} {case.formatted_path}"
            if resp.status_code >= 500:
                problems.append(f"{label} -> {resp.status_code}: {resp.content[:300]!r} (query {case.query}, "
                                f"body {str(case.body)[:200]})")
            elif resp.status_code >= 400 and not is_outcome(resp.content):
                problems.append(f"{label} -> {resp.status_code} not an OperationOutcome: {resp.content[:200]!r}")

        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=op.as_strategy(generation_mode=mode))
                def run(case: Any) -> None:
                    check(case)

                try:
                    run()
                except Exception as exc:  # noqa: BLE001  (a schema the generator cannot satisfy in one mode)
                    if "Unsatisfiable" not in type(exc).__name__ and "negative" not in str(exc).lower():
                        problems.append(f"{op.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:300]}")
    print(f"\n{len(operations)} operations, answers by status: {dict(sorted(seen.items()))}")
    assert sum(seen.values()) > 2 * len(operations)
    assert not problems, "\n".join(problems[:30])
