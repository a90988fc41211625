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
from service.access.record import RequestRecord
from service.audit import chain
from service.audit.events import rest_event
from service.audit.tables import audit_patient
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.storage.store import Store

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


class Recorder:
    """Writes audit events on the caller's connection (`base`: the FHIR base; `db`: for failures' own units)."""

    def __init__(self, db: Any, base: str) -> None:
        self.db = db
        self.base = base
        self.postgres = db.is_postgres
        self.store = Store(postgres=self.postgres, listeners=[self._index])

    def _index(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        """Our own events are indexed by the native AuditEvent extractor (service.audit.index)."""
        from service.audit import index

        if resource is not None and not stored.deleted:
            index.index(conn, stored, resource, self.base)

    # -- storing -----------------------------------------------------------------------------------
    def store_event(self, conn: Connection, event: dict[str, Any], patients: list[str] | None = None,
                    *, key: str | None = None) -> Stored:
        if patients is None:
            patients = _entity_patients(event)
        if self.postgres:
            return self._store_pipelined(conn, event, patients, key)
        conn.info[_INTERNAL] = True
        try:
            stored = self.store.create(conn, event, owners=tuple(dict.fromkeys(patients)))
        finally:
            conn.info.pop(_INTERNAL, None)
        self._finish(conn, stored, patients, key or stored.res_id)
        return stored

    def _store_pipelined(self, conn: Connection, event: dict[str, Any], patients: list[str],
                         key: str | None) -> Stored:
        """The same rows as the store path, sent in three round trips (service/audit/pipelined.py)."""
        import orjson

        from service.audit import index, pipelined
        from service.clock import now_us
        from service.storage.store import canonical, new_id

        rid, lu = new_id(), now_us()
        content = canonical(event, rid, 1, lu)
        stored = Stored("AuditEvent", rid, 1, lu, False, content, "POST")
        rows = index.index_rows("AuditEvent", rid, orjson.loads(content), self.base, patients)
        pipelined.store(conn, stored, rows, patients, key or rid)
        return stored

    def _finish(self, conn: Connection, stored: Stored, patients: list[str], key: str) -> None:
        if patients:
            conn.execute(insert(audit_patient), [{"patient_id": p, "recorded": stored.last_updated,
                                                  "event_id": stored.res_id} for p in dict.fromkeys(patients)])
        assert stored.content is not None
        chain.append(conn, stored.res_id, stored.last_updated, stored.content, key=key, postgres=self.postgres)

    # -- pipeline hooks ----------------------------------------------------------------------------
    def on_interaction(self, repo: Any, req: FhirRequest, resp: FhirResponse) -> None:
        """Record one interaction on the repository's connection (a write unit), from the request's record."""
        self._write(repo._conn, repo.ctx, repo.record, req, resp)

    def on_failure(self, ctx: RequestContext | None, record: RequestRecord, req: FhirRequest,
                   resp: FhirResponse) -> None:
        """Record a refused or failed request in its own unit of work."""
        with self.db.write() as conn:
            self._write(conn, ctx, record, req, resp)

    def _write(self, conn: Connection, ctx: RequestContext | None, record: RequestRecord, req: FhirRequest,
               resp: FhirResponse) -> None:
        event, patients = rest_event(
            ctx, record, self.base, method=req.method, path=req.path, params=req.params,
            status=resp.status, body=resp.body, headers=resp.headers, req_body=req.body,
            remote=(ctx.remote_addr if ctx else None) or req.header("x-sharedcare-remote"))
        self.store_event(conn, event, patients, key=ctx.request_id if ctx else None)

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


def register(db: Any, base: str) -> Recorder:
    rec = Recorder(db, base)
    _RECORDERS[db.engine] = rec
    return rec
