"""Writing AuditEvents: the pipeline hooks, the append-only guard and the chain step.

An event is stored as an ordinary AuditEvent resource (`store.create`, so it is indexed for search
like any other resource), indexed by patient (`audit_patient`) and appended to its lane's hash chain,
all on the caller's connection and in its transaction. The chain step is the last statement, so the
lane lock is held only until the commit.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import insert
from sqlalchemy.engine import Connection, Engine

from service.access.context import RequestContext
from service.audit import chain
from service.audit.events import patients_of, rest_event
from service.audit.tables import audit_patient
from service.fhir.outcome import OperationOutcomeError
from service.interactions.request import FhirRequest, FhirResponse
from service.interactions.session import Services, Session
from service.storage.store import Store, Stored

_INTERNAL = "sharedcare.audit.internal"
_RECORDERS: WeakKeyDictionary[Engine, Recorder] = WeakKeyDictionary()
WRITES = {"create", "update", "patch", "delete"}


def append_only_error(what: str) -> OperationOutcomeError:
    return OperationOutcomeError(405, "not-supported", f"AuditEvents are append-only: {what} is not allowed. "
                                 "Read, search and history remain available.", headers={"Allow": "GET, POST"})


def recorder_for(conn: Connection) -> Recorder:
    rec = _RECORDERS.get(conn.engine)
    if rec is None:
        raise RuntimeError("audit is not installed for this database (service.audit.install)")
    return rec


class _AuditStore(Store):
    """The record store for our own AuditEvents: the same tables and listeners, except that search
    indexing uses the native AuditEvent extractor (service.audit.index) instead of FHIRPath."""

    def __init__(self, services: Services) -> None:
        super().__init__(postgres=services.db.is_postgres)
        self._services = services

    @property  # type: ignore[override]
    def listeners(self) -> list[Any]:
        search = self._services.search
        generic = getattr(search, "index_listener", None)
        main = self._services.store.listeners
        if generic is None or generic not in main:
            return main
        return [self._index if lst == generic else lst for lst in main]

    @listeners.setter
    def listeners(self, value: list[Any]) -> None:
        pass

    def _index(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        from service.audit import index

        if resource is not None and not stored.deleted:
            index.index(conn, stored, resource, self._services.base)


class Recorder:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.postgres = services.db.is_postgres
        self.store = _AuditStore(services)

    # -- storing -----------------------------------------------------------------------------------
    def store_event(self, conn: Connection, event: dict[str, Any], patients: list[str] | None = None,
                    *, key: str | None = None) -> Stored:
        if patients is None:
            patients = _entity_patients(event)
        if self.postgres:
            return self._store_pipelined(conn, event, patients, key)
        conn.info[_INTERNAL] = True
        try:
            stored = self.store.create(conn, event)
        finally:
            conn.info.pop(_INTERNAL, None)
        self._finish(conn, stored, patients, key or stored.res_id)
        return stored

    def _store_pipelined(self, conn: Connection, event: dict[str, Any], patients: list[str],
                         key: str | None) -> Stored:
        """The same rows as the store path, sent in three round trips (service/audit/pipelined.py)."""
        import orjson

        from service.audit import index, pipelined
        from service.storage.clock import now_us
        from service.storage.store import canonical, new_id

        rid, lu = new_id(), now_us()
        content = canonical(event, rid, 1, lu)
        stored = Stored("AuditEvent", rid, 1, lu, False, content, "POST")
        rows = index.index_rows("AuditEvent", rid, orjson.loads(content), self.services.base)
        pipelined.store(conn, stored, rows, patients, key or rid)
        return stored

    def _finish(self, conn: Connection, stored: Stored, patients: list[str], key: str) -> None:
        if patients:
            conn.execute(insert(audit_patient), [{"patient_id": p, "recorded": stored.last_updated,
                                                  "event_id": stored.res_id} for p in dict.fromkeys(patients)])
        assert stored.content is not None
        chain.append(conn, stored.res_id, stored.last_updated, stored.content, key=key, postgres=self.postgres)

    # -- pipeline hooks ----------------------------------------------------------------------------
    def on_interaction(self, session: Session, req: FhirRequest, resp: FhirResponse, interaction: str) -> None:
        """`Services.extras["audit"]`: record one interaction on the session's connection (a write unit)."""
        ctx = session.ctx
        extra = self._write_patients(session, req, resp, interaction)
        event, patients = rest_event(
            ctx, session.base, interaction=interaction, method=req.method, path=req.path, params=req.params,
            status=resp.status, body=resp.body, headers=resp.headers, req_body=req.body, extra_patients=extra,
            remote=(ctx.remote_addr if ctx else None) or req.header("x-sharedcare-remote"))
        self.store_event(session.conn, event, patients, key=ctx.request_id if ctx else None)

    def on_failure(self, ctx: RequestContext | None, req: FhirRequest, resp: FhirResponse, interaction: str) -> None:
        """`Services.extras["audit_failure"]`: record a refused or failed request in its own unit of work."""
        with self.services.db.write() as conn:
            self.on_interaction(Session(self.services, conn, ctx), req, resp, interaction)  # type: ignore[arg-type]

    def _write_patients(self, session: Session, req: FhirRequest, resp: FhirResponse, interaction: str) -> list[str]:
        """For successful writes whose response carries no body: the patients of the written resource."""
        if interaction not in WRITES or resp.status >= 400 or resp.body:
            return []
        parts = [p for p in req.path.split("/") if p]
        loc = resp.headers.get("Location", "")
        if "/_history/" in loc:
            rtype, rid = loc.split("/_history/")[0].rsplit("/", 2)[-2:]
        elif len(parts) >= 2:
            rtype, rid = parts[0], parts[1]
        else:
            return []
        rows = session.store.history(session.conn, rtype=rtype, rid=rid, count=2)
        for stored in rows:
            if stored.content is not None:
                return patients_of(stored.json())
        return []

    # -- store listener: append-only, and chaining of AuditEvents sent by partners -----------------
    def listener(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        if stored.res_type != "AuditEvent" or conn.info.get(_INTERNAL):
            return
        if stored.deleted:
            raise append_only_error("deleting an AuditEvent")
        if stored.version != 1:
            raise append_only_error("changing an AuditEvent")
        # An AuditEvent sent by a partner system (IHE ATNA): kept as sent, and chained like our own.
        self._finish(conn, stored, _entity_patients(resource or {}), stored.res_id)


def _entity_patients(event: dict[str, Any]) -> list[str]:
    out = []
    for ent in event.get("entity") or []:
        role = (ent.get("role") or {}) if isinstance(ent, dict) else {}
        what = (ent.get("what") or {}).get("reference") if isinstance(ent, dict) else None
        if isinstance(what, str) and (role.get("code") == "1" or what.startswith("Patient/")):
            from service.audit.events import patient_of_reference

            pid = patient_of_reference(what)
            if pid:
                out.append(pid)
    return list(dict.fromkeys(out))


def refuse_changes(req: FhirRequest, interaction: str) -> None:
    """Before any storage access: PUT, PATCH and DELETE on AuditEvent are refused (405)."""
    if interaction in ("update", "patch", "delete") and req.path.split("/", 1)[0] == "AuditEvent":
        raise append_only_error(f"{req.method} {req.path}")


def register(services: Services) -> Recorder:
    rec = Recorder(services)
    _RECORDERS[services.db.engine] = rec
    return rec
