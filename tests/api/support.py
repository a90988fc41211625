"""Helpers for the FHIR API tests (they run on SQLite and PostgreSQL, see tests/conftest.py)."""

from __future__ import annotations

from typing import Any

FHIR = "application/fhir+json"


def all_versions(client: Any) -> list[tuple[str, str]]:
    """Every version in the whole-system history, as (Type/id, versionId|'deleted'); newest first."""
    out: list[tuple[str, str]] = []
    url = "/fhir/_history?_count=1000"
    while url:
        body = client.get(url).json()
        for e in body.get("entry", []):
            key = e["fullUrl"].split("/fhir/", 1)[1]
            if key.startswith("AuditEvent/"):  # every request writes one (service.audit); not the data under test
                continue
            if key.startswith("Provenance/") and "server-recorded" in [  # service.workflows.provenance
                    t.get("code") for t in e.get("resource", {}).get("meta", {}).get("tag", [])]:
                continue
            out.append((key, e["resource"]["meta"]["versionId"] if "resource" in e else "deleted"))
        nxt = [lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"]
        url = nxt[0] if nxt else ""
    return out


def assert_outcome(resp: Any, status: int, *words: str) -> dict[str, Any]:
    """The response is an OperationOutcome with this status whose diagnostics name every word."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(("application/fhir+json", "application/json")), resp.headers
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert issue["code"]
        assert issue["diagnostics"]
    text = " ".join(i["diagnostics"] for i in body["issue"])
    for w in words:
        assert w in text, f"{w!r} not in {text!r}"
    assert "Traceback" not in resp.text
    return body


def patient(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Jo"]}],
                           "gender": "female"}
    res.update(extra)
    return res
