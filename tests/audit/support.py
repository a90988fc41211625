"""Helpers for the audit tests: reading the trail back over the API, acting as a given user, tampering."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from service.access.context import Principal, RequestContext
from service.api.pipeline import handle
from service.fhir.request import FhirRequest, FhirResponse

FHIR = "application/fhir+json"


def patient(**extra: Any) -> dict[str, Any]:
    res = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Jo"]}], "gender": "female"}
    res.update(extra)
    return res


def events(client: Any) -> list[dict[str, Any]]:
    """Every AuditEvent, oldest first (type history; reading them is itself audited, after the response)."""
    out: list[dict[str, Any]] = []
    url = "/fhir/AuditEvent/_history?_count=1000"
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        out += [e["resource"] for e in body.get("entry", []) if "resource" in e]
        nxt = [lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"]
        url = nxt[0].split("http://testserver", 1)[-1] if nxt else ""
    return list(reversed(out))


def subtype(ev: dict[str, Any]) -> str:
    return ev["subtype"][0]["code"]


def agent(ev: dict[str, Any], code: str) -> dict[str, Any] | None:
    for a in ev["agent"]:
        if any(c["code"] == code for c in a["type"]["coding"]):
            return a
    return None


def entity_refs(ev: dict[str, Any], role: str) -> list[str]:
    return [e["what"]["reference"] for e in ev.get("entity", []) if e.get("role", {}).get("code") == role
            and "reference" in e.get("what", {})]


def patients(ev: dict[str, Any]) -> list[str]:
    return entity_refs(ev, "1")


def staff_context(*, practitioner: str, organisation: str, ods: str = "RX1", role_code: str = "R8001",
                  purpose: tuple[str, ...] = ("TREAT",), reason: str | None = None) -> RequestContext:
    try:  # with the identity layer installed, the context needs scopes like a real token's
        from service.auth.scopes import ScopeSet

        scopes: Any = ScopeSet.parse("user/*.cruds system/*.cruds")
    except ImportError:
        scopes = None
    principal = Principal(subject="nurse.jo", kind="admin", client_id="web-portal", fhir_user=practitioner,
                          organisation=organisation, ods_code=ods, role_code=role_code,
                          roles=frozenset({"admin", "clinician"}), scopes=scopes)
    return RequestContext(principal, purpose_of_use=purpose, break_glass_reason=reason, remote_addr="10.1.2.3")


def as_user(services: Any, ctx: RequestContext, method: str, path: str,
            params: list[tuple[str, str]] | None = None, notes: tuple[str, ...] = ()) -> FhirResponse:
    """A request through the real pipeline with a given context (as the web pages will do); `notes`: policy notes
    already on the request's record (as the enforcement point writes them)."""
    from service.access.record import RequestRecord

    record = RequestRecord()
    for n in notes:
        record.note(n)
    return handle(FhirRequest(method=method, path=path, params=params or []), services, ctx, record)


def sql(services: Any, statement: str, **params: Any) -> Any:
    with services.db.write() as conn:
        return conn.execute(text(statement), params).fetchall() if statement.lstrip().upper().startswith(
            "SELECT") else conn.execute(text(statement), params).rowcount


def tamper(services: Any, statement: str, **params: Any) -> int:
    """Run a statement as someone who can write every table would: with the append-only triggers set aside
    (PostgreSQL: session_replication_role; SQLite: triggers dropped for the moment). Returns the rowcount."""
    from tests.conftest import without_audit_triggers

    with services.db.write() as conn:
        if services.db.is_postgres:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            return int(conn.execute(text(statement), params).rowcount)
        with without_audit_triggers(conn):
            return int(conn.execute(text(statement), params).rowcount)
