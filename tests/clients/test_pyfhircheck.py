"""pyfhircheck's base R4 REST checks (its built-in `base-r4` pack: capability statement, read with ETag and
Last-Modified and the resource validated against the base spec, vread, search, paging, history, a missing
resource's OperationOutcome, JSON negotiation) against the running server, as the GP practice's system.

The read check validates the resource itself, so the definitions of the extensions the server adds
(`authoring-organisation`) must be known to the validator: the test fetches them from the server, as a partner
would (listed in the CapabilityStatement, read from the server), and gives them to pyfhircheck."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.conftest import partner_token

AUTHORED_BY = "https://sharedcare.example.org/fhir/StructureDefinition/authoring-organisation"


def _definitions(server: str, token: str, folder: Path) -> list[str]:
    """The StructureDefinitions of the server's extensions, found as a partner finds them: the CapabilityStatement
    lists them (its StructureDefinition entry), each is read from the server and saved for the validator."""
    metadata = httpx.get(f"{server}/fhir/metadata", timeout=30).json()
    entry = next((r for rest in metadata.get("rest", []) for r in rest.get("resource", [])
                  if r.get("type") == "StructureDefinition"), {})
    links = re.findall(r"https?://[^\s,]+/StructureDefinition/[A-Za-z0-9.-]+", entry.get("documentation") or "")
    paths = []
    for link in links:
        r = httpx.get(link, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, f"{link}: {r.status_code} {r.text[:300]}"
        path = folder / f"{r.json()['id']}.json"
        path.write_text(r.text)
        paths.append(str(path))
    return paths


def _run(server: str, rtype: str, rid: str, folder: Path) -> Any:
    from pyfhircheck import ApiTestOptions, load_builtin_api_test_plan, run_api_tests
    from pyfhircheck.config import ValidatorConfig

    token = partner_token(server, "system/*.rs")
    definitions = _definitions(server, token, folder)
    urls = {json.loads(Path(p).read_text())["url"] for p in definitions}
    assert AUTHORED_BY in urls, urls  # listed in the CapabilityStatement and served
    config = ValidatorConfig.load_dict({"fhirVersion": "4.0.1", "localPackagePaths": definitions,
                                        "evidenceOutputDir": str(folder / "evidence")})
    return run_api_tests(f"{server}/fhir", load_builtin_api_test_plan("base-r4"), config=config,
                         options=ApiTestOptions(inputs={"resourceType": rtype, "resourceId": rid, "versionId": "1"},
                                                auth=lambda: {"Authorization": f"Bearer {token}"}, timeout_seconds=30))


def _failures(report: Any) -> list[str]:
    out = []
    for s in report.scenarios:
        if s.status.value != "PASS":
            details = [f"{a.kind}: {a.message} (expected {a.expected!r}, got {a.actual!r})" for a in s.assertions
                       if a.status.value != "PASS"]
            if s.validation_report is not None:
                details += [f"{i.code} {i.path}: {i.message}" for i in s.validation_report.errors]
            out.append(f"{s.id} {s.status.value}: {s.skip_reason or ''} {details}")
    return out


@pytest.mark.parametrize(("rtype", "rid"), [("Patient", "pat-pat"), ("CarePlan", "careplan-pat-1"),
                                             ("Organization", "org-gp-practice")])
def test_base_r4_checks_pass(people, server, tmp_path, rtype, rid):
    report = _run(server, rtype, rid, tmp_path)
    assert _failures(report) == []
    assert (report.passed, report.failed, report.skipped) == (8, 0, 0)
