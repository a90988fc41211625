"""Audit: every interaction, decision, break-glass, login and token issued writes an AuditEvent (IHE BALP).

Events are ordinary AuditEvent resources (one read/search path), chained per lane with SHA-256
(`chain.py`) so `sharedcare audit verify` finds any altered, removed or reordered event. The API
refuses to change or delete them (405). Partner systems may POST AuditEvents (IHE ATNA); those are
kept as sent and chained like ours.

API for other modules (identity, consent):

    record(conn, event, *, patients=None) -> str
        Store and chain a complete AuditEvent dict on `conn`, inside the caller's write transaction;
        returns its id. Build `event` with `audit_event(ctx, base, type=..., ...)` or use:
    record_login(conn, ctx, *, user, success, detail=None) -> str
    record_token(conn, ctx, *, client_id, user=None, scope="", patient=None, success=True, detail=None) -> str
    record_decision(conn, ctx, *, permit, interaction, target=None, patient=None, reason=None) -> str
    record_break_glass(conn, ctx, *, patient, reason, target=None) -> str
The request's own event is built from its RequestRecord (service/access/record.py): the patients concerned,
the resources touched, the basis of each decision (`record.note`) and break-glass flags.

`conn` must be in a write unit (`db.write()`); on SQLite a read unit cannot take the write lock safely.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from service.access.context import RequestContext
from service.audit import codes as c
from service.audit.events import audit_event
from service.audit.recorder import Recorder, recorder_for, register

__all__ = [
    "Recorder",
    "audit_event",
    "record",
    "record_break_glass",
    "record_decision",
    "record_login",
    "record_token",
    "register",
]


def record(conn: Connection, event: dict[str, Any], *, patients: list[str] | None = None,
           ctx: RequestContext | None = None) -> str:
    rec = recorder_for(conn)
    return rec.store_event(conn, event, patients, key=ctx.request_id if ctx else None).res_id


def _base(conn: Connection) -> str:
    return recorder_for(conn).base


def _outcome(success: bool) -> str:
    return "0" if success else "4"


def record_login(conn: Connection, ctx: RequestContext | None, *, user: str, success: bool,
                 detail: str | None = None) -> str:
    ent = {"what": {"identifier": {"system": c.USER_ID, "value": user}}, "type": c.ENTITY_PERSON,
           "role": c.coding(c.OBJECT_ROLE, "11", "Security User Entity")}
    ev = audit_event(ctx, _base(conn), type=c.TYPE_LOGIN, subtype=[c.SUBTYPE_LOGIN], action="E",
                     outcome=_outcome(success), outcome_desc=detail, entities=[ent])
    return record(conn, ev, ctx=ctx)


def record_token(conn: Connection, ctx: RequestContext | None, *, client_id: str, user: str | None = None,
                 scope: str = "", patient: str | None = None, success: bool = True, detail: str | None = None) -> str:
    ents = [{"what": {"identifier": {"system": c.CLIENT_ID, "value": client_id}}, "type": c.ENTITY_OBJECT,
             "role": c.coding(c.OBJECT_ROLE, "11", "Security User Entity"),
             "detail": [{"type": "scope", "valueString": scope}] + (
                 [{"type": "user", "valueString": user}] if user else [])}]
    ev = audit_event(ctx, _base(conn), type=c.TYPE_LOGIN, subtype=[c.SUBTYPE_TOKEN], action="E",
                     outcome=_outcome(success), outcome_desc=detail, patients=[patient] if patient else [],
                     entities=ents)
    return record(conn, ev, ctx=ctx)


def record_decision(conn: Connection, ctx: RequestContext | None, *, permit: bool, interaction: str,
                    target: str | None = None, patient: str | None = None, reason: str | None = None) -> str:
    ents = [{"what": {"reference": target}, "type": c.ENTITY_OBJECT, "role": c.ROLE_RESOURCE}] if target else []
    ev = audit_event(ctx, _base(conn), type=c.TYPE_POLICY,
                     subtype=[c.coding(c.LOCAL_EVENT, "permit" if permit else "deny"),
                              c.coding(c.RESTFUL, interaction)],
                     action="E", outcome="0" if permit else "4", outcome_desc=reason,
                     patients=[patient] if patient else [], entities=ents)
    return record(conn, ev, ctx=ctx)


def record_break_glass(conn: Connection, ctx: RequestContext | None, *, patient: str, reason: str,
                       target: str | None = None) -> str:
    ents = [{"what": {"reference": target}, "type": c.ENTITY_OBJECT, "role": c.ROLE_RESOURCE}] if target else []
    ev = audit_event(ctx, _base(conn), type=c.TYPE_BREAK_GLASS, subtype=[c.coding(c.LOCAL_EVENT, "break-glass")],
                     action="E", outcome="0", outcome_desc=reason, patients=[patient], entities=ents)
    return record(conn, ev, ctx=ctx)


