"""Bulk export test helpers: a seeded population, kick-off, the worker run by hand, polling and downloading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.policy.support import consent, observation

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
GP = "org-gp-practice"
TRUST = "org-community-trust"


def nhs_number(n: int) -> str:
    """A valid NHS number (modulus 11) from a small integer."""
    while True:
        base = f"{900000000 + n:09d}"
        total = sum(int(d) * w for d, w in zip(base, range(10, 1, -1)))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return base + str(check)
        n += 100_000


@dataclass
class Population:
    """Who is who in the seeded population (ids), and what each exporter should get."""
    in_care: list[str] = field(default_factory=list)  # registered with the GP practice: gp-system cares for them
    not_in_care: list[str] = field(default_factory=list)
    objecting: list[str] = field(default_factory=list)  # in care, object to all sharing (own records stay visible)
    opted_out: list[str] = field(default_factory=list)  # in care, on the National Data Opt-out list
    research_objection: list[str] = field(default_factory=list)  # in care, a consent refusing research
    observations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # patient -> [(obs id, author)]
    nhs: dict[str, str] = field(default_factory=dict)


def seed(admin: Any, services: Any, n: int = 3, start: int = 100) -> Population:
    """`n` people of each kind, each with an observation written by the GP practice and one by the community trust.
    Written through the API by the administrator (keeping the authoring organisation, as a data migration would)."""
    pop = Population()
    k = start
    groups = [("in_care", GP), ("not_in_care", "org-acute-trust"), ("objecting", GP), ("opted_out", GP),
              ("research_objection", GP)]
    for kind, gp in groups:
        for _ in range(n):
            k += 1
            number = nhs_number(k)
            body = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": number}],
                    "name": [{"family": f"Export{k}", "given": ["Test"]}], "gender": "unknown",
                    "generalPractitioner": [{"reference": f"Organization/{gp}"}],
                    "managingOrganization": {"reference": f"Organization/{gp}"}}
            r = admin.post("/fhir/Patient", json=body)
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            getattr(pop, kind).append(pid)
            pop.nhs[pid] = number
            for org in (GP, TRUST):
                o = admin.post("/fhir/Observation", json=observation(pid, f"note by {org}", org=org))
                assert o.status_code == 201, o.text
                pop.observations.setdefault(pid, []).append((o.json()["id"], org))
    for pid in pop.objecting:
        r = admin.post("/fhir/Consent", json=consent(pid, {"type": "deny"}))
        assert r.status_code == 201, r.text
    for pid in pop.research_objection:
        body = consent(pid, {"type": "deny", "purpose": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}, scope="research")
        r = admin.post("/fhir/Consent", json=body)
        assert r.status_code == 201, r.text
    from service.policy import optout

    with services.db.write() as conn:
        optout.import_numbers(conn, [pop.nhs[p] for p in pop.opted_out], source="test")
    return pop


def kick_off(who: Any, path: str, **kw: Any) -> str:
    r = who.get(path, headers={**ASYNC, **kw.pop("headers", {})}, **kw)
    assert r.status_code == 202, r.text
    assert "Content-Location" in r.headers
    return r.headers["Content-Location"]


def run_worker(services: Any) -> list[str]:
    """Run every queued export to its end with a worker of our own (the background one is stopped)."""
    from service.export.worker import ExportWorker

    worker = ExportWorker(services)
    outcomes = []
    while (done := worker.run_once()) is not None:
        outcomes.append(done)
    return outcomes


def manifest(who: Any, status_url: str) -> dict[str, Any]:
    r = who.get(status_url)
    assert r.status_code == 200, r.text
    return r.json()


def download(who: Any, man: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """type -> resources, from every output file; each file's count is checked against its lines."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in man["output"]:
        r = who.get(f["url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in r.content.splitlines() if line.strip()]
        assert len(lines) == f["count"]
        assert all(x["resourceType"] == f["type"] for x in lines)
        out.setdefault(f["type"], []).extend(lines)
    return out


def ids(found: dict[str, list[dict[str, Any]]], rtype: str) -> list[str]:
    return sorted(x["id"] for x in found.get(rtype, []))
