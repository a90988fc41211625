"""Audit: every access, decision, break-glass, sign-in and token issued leaves one compact, append-only row in
`audit_log` (service/audit/tables.py), sealed in batches under a key the database does not hold
(service/audit/seal.py) and read back as IHE BALP AuditEvents (render.py, trail.py).

- `AuditLog` (log.py): a write's row in the write's own transaction; a read's row through the group commit;
  a row the database cannot take is spooled locally and flushed later.
- `rows.py` builds rows from the request's frozen context and its RequestRecord.
- For other modules, on a connection in a write unit:
    record_login(conn, ctx, *, user, success, detail=None)
    record_token(conn, ctx, *, client_id, user=None, scope="", patient=None, success=True, detail=None)
    record_decision(conn, ctx, *, permit, interaction, target=None, patient=None, reason=None)
    record_break_glass(conn, ctx, *, patient, reason, target=None)
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from service.access.context import RequestContext
from service.audit.log import AuditLog, insert_rows
from service.audit.rows import event_row

__all__ = ["AuditLog", "record_break_glass", "record_decision", "record_login", "record_token"]


def _outcome(success: bool) -> int:
    return 0 if success else 4


def record_login(conn: Connection, ctx: RequestContext | None, *, user: str, success: bool,
                 detail: str | None = None) -> None:
    insert_rows(conn, [event_row(ctx, kind="login", interaction="login", outcome=_outcome(success), desc=detail,
                                 login=user)])


def record_token(conn: Connection, ctx: RequestContext | None, *, client_id: str, user: str | None = None,
                 scope: str = "", patient: str | None = None, success: bool = True, detail: str | None = None) -> None:
    row = event_row(ctx, kind="token", interaction="token", outcome=_outcome(success), desc=detail,
                    patients=(patient,) if patient else (), scope=scope, for_user=user, for_client=client_id)
    row.client = row.client or client_id
    insert_rows(conn, [row])


def record_decision(conn: Connection, ctx: RequestContext | None, *, permit: bool, interaction: str,
                    target: str | None = None, patient: str | None = None, reason: str | None = None) -> None:
    insert_rows(conn, [event_row(ctx, kind="decision", interaction="permit" if permit else "deny",
                                 outcome=0 if permit else 4, desc=reason, patients=(patient,) if patient else (),
                                 target=target, on=interaction)])


def record_break_glass(conn: Connection, ctx: RequestContext | None, *, patient: str, reason: str,
                       target: str | None = None) -> None:
    insert_rows(conn, [event_row(ctx, kind="break-glass", interaction="break-glass", outcome=0, desc=reason,
                                 patients=(patient,), target=target)])
