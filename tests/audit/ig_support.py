"""Helpers for the IG lead's tools: the demo records, staff contexts like the demo users', Parameters parsing."""

from __future__ import annotations

from typing import Any

from service.access.context import Principal, RequestContext
from service.auth.scopes import ScopeSet

IG_OPERATIONS = [("GET", "$break-glass-queue"), ("POST", "$break-glass-review"), ("GET", "$objections-report"),
                 ("GET", "$denials-report"), ("GET", "$access-report")]

# The demo professionals (service/demo/records.py): user -> (Practitioner id, organisation id, ODS, job role)
STAFF = {"ward.wes": ("prac-wes", "org-acute-trust", "RBZ", "R8001"),
         "gp.gary": ("prac-gary", "org-gp-practice", "A81001", "R0260"),
         "nurse.nina": ("prac-nina", "org-community-trust", "RYX", "R8001"),
         "admin.ada": ("prac-ada", None, None, None)}


def load_demo(services: Any) -> None:
    """The demo records plus the IG lead's and administrator's Practitioner records."""
    from service.auth.demo import extra_records
    from service.demo.loader import load_records
    from service.repository import Repository

    load_records(services)
    with services.db.write() as conn:
        repo = Repository.internal(services, conn)
        for res in extra_records():
            repo.update(res["resourceType"], res["id"], res)


def staff(user: str, *, purpose: tuple[str, ...] = ("TREAT",), reason: str | None = None,
          trusted: bool = False) -> RequestContext:
    """A request context like the demo user's token gives (for opening grants and making requests).
    `trusted`: kind admin, so the access policy permits the request whatever the care relationships (for
    tests that need a request to succeed or fail for reasons of their own choosing)."""
    prac, org, ods, role = STAFF[user]
    kind = "admin" if user == "admin.ada" or trusted else "practitioner"
    principal = Principal(subject=user, kind=kind, fhir_user=f"Practitioner/{prac}",
                          organisation=f"Organization/{org}" if org else None, ods_code=ods, role_code=role,
                          roles=frozenset({"admin"} if user == "admin.ada" else {"clinician"}),
                          scopes=ScopeSet.parse("user/*.cruds"))
    return RequestContext(principal, purpose_of_use=purpose, break_glass_reason=reason)


def ig_context() -> RequestContext:
    principal = Principal(subject="ig.iris", kind="ig", fhir_user="Practitioner/prac-iris",
                          organisation="Organization/org-community-trust", ods_code="RYX",
                          roles=frozenset({"ig-lead"}), scopes=ScopeSet.parse("user/*.rs"))
    return RequestContext(principal)


def open_grant(services: Any, user: str, patient_id: str, reason: str, ttl_seconds: int = 3600) -> Any:
    from service.policy.break_glass import open_grant as open_

    with services.db.write() as conn:
        return open_(conn, staff(user, purpose=("BTG",), reason=reason), patient_id, reason, ttl_seconds)


def parameters(body: dict[str, Any], name: str) -> list[Any]:
    """The values (or part dicts) of every top-level parameter called `name`."""
    assert body["resourceType"] == "Parameters", body
    return [value_of(p) for p in body.get("parameter", []) if p["name"] == name]


def value_of(p: dict[str, Any]) -> Any:
    if "part" in p:
        return parts(p)
    return next(v for k, v in p.items() if k.startswith("value"))


def parts(p: dict[str, Any]) -> dict[str, Any]:
    """A parameter's parts as {name: value} (repeated names become lists)."""
    out: dict[str, Any] = {}
    for q in p["part"]:
        v = value_of(q)
        if q["name"] in out:
            out[q["name"]] = out[q["name"]] + [v] if isinstance(out[q["name"]], list) else [out[q["name"]], v]
        else:
            out[q["name"]] = v
    return out


def review_body(**values: Any) -> dict[str, Any]:
    kinds = {"grant": "valueString", "outcome": "valueCode", "note": "valueString", "close": "valueBoolean"}
    return {"resourceType": "Parameters",
            "parameter": [{"name": k, kinds.get(k, "valueString"): v} for k, v in values.items()]}


def issue_expression(r: Any) -> list[str]:
    return [e for i in r.json()["issue"] for e in i.get("expression", [])]
