"""Break-glass grants: emergency access to one patient's record, time-limited, flagged and queued for review.

A request that states purpose of use BTG with a reason (`X-Purpose-Of-Use: BTG`, `X-Break-Glass-Reason`),
by a role allowed to break glass, opens a grant for (user, patient) until `expires_us`; while it is open the
same user's requests for that patient are permitted as break-glass even without the headers, and every
such access is flagged in its AuditEvent (purposeOfEvent BTG with the reason) and counted on the grant.
Each grant is one entry in the IG lead's review queue (status pending -> reviewed, with an outcome and a note).

All functions take a connection in a write unit (grants are written by the request's audit step).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from service.access.context import RequestContext
from service.clock import now_us
from service.policy.tables import break_glass as T

OUTCOMES = ("appropriate", "inappropriate")
PENDING, REVIEWED = "pending", "reviewed"


@dataclass(frozen=True)
class Grant:
    id: str
    patient_id: str
    subject: str
    fhir_user: str | None
    organisation: str | None
    ods_code: str | None
    role_code: str | None
    reason: str
    request_id: str
    opened_us: int
    expires_us: int
    accesses: int
    last_access_us: int | None
    status: str
    outcome: str | None
    reviewer: str | None
    reviewed_us: int | None
    note: str | None

    def active(self, at_us: int) -> bool:
        return self.opened_us <= at_us < self.expires_us


def _grant(row: Any) -> Grant:
    return Grant(**{c: getattr(row, c) for c in Grant.__dataclass_fields__})


def active_grant(conn: Connection, subject: str, patient_id: str, at_us: int | None = None) -> Grant | None:
    """The newest grant of `subject` for `patient_id` still open at `at_us` (now)."""
    at = at_us if at_us is not None else now_us()
    row = conn.execute(select(T).where(T.c.subject == subject, T.c.patient_id == patient_id,
                                       T.c.expires_us > at).order_by(T.c.expires_us.desc()).limit(1)).first()
    return _grant(row) if row is not None else None


def active_patients(conn: Connection, subject: str, at_us: int | None = None) -> set[str]:
    """The patients `subject` has an open grant for (for search filters)."""
    at = at_us if at_us is not None else now_us()
    return {r[0] for r in conn.execute(select(T.c.patient_id).where(T.c.subject == subject, T.c.expires_us > at))}


def open_grant(conn: Connection, ctx: RequestContext, patient_id: str, reason: str, ttl_seconds: int) -> Grant:
    """Open a grant (or return the one already open for this user and patient, counting this access)."""
    p = ctx.principal
    assert p is not None
    now = now_us()
    current = active_grant(conn, p.subject, patient_id, now)
    if current is not None:
        record_access(conn, current.id, now)
        return current
    gid = uuid.uuid4().hex
    conn.execute(T.insert().values(
        id=gid, patient_id=patient_id, subject=p.subject, fhir_user=p.fhir_user, organisation=p.organisation,
        ods_code=p.ods_code, role_code=p.role_code, reason=reason, request_id=ctx.request_id, opened_us=now,
        expires_us=now + ttl_seconds * 1_000_000, accesses=1, last_access_us=now, status=PENDING))
    found = get(conn, gid)
    assert found is not None
    return found


def record_access(conn: Connection, grant_id: str, at_us: int | None = None) -> None:
    at = at_us if at_us is not None else now_us()
    conn.execute(update(T).where(T.c.id == grant_id).values(accesses=T.c.accesses + 1, last_access_us=at))


def get(conn: Connection, grant_id: str) -> Grant | None:
    row = conn.execute(select(T).where(T.c.id == grant_id)).first()
    return _grant(row) if row is not None else None


def queue(conn: Connection, *, status: str | None = PENDING, patient_id: str | None = None,
          limit: int = 100, before_us: int | None = None) -> list[Grant]:
    """Grants newest first; `status` None lists every grant."""
    q = select(T)
    if status is not None:
        q = q.where(T.c.status == status)
    if patient_id is not None:
        q = q.where(T.c.patient_id == patient_id)
    if before_us is not None:
        q = q.where(T.c.opened_us < before_us)
    return [_grant(r) for r in conn.execute(q.order_by(T.c.opened_us.desc(), T.c.id).limit(limit))]


def review(conn: Connection, grant_id: str, *, reviewer: str, outcome: str, note: str | None,
           close: bool = True) -> Grant | None:
    """Record an IG review: outcome appropriate|inappropriate, a note; `close` ends the grant now too."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    now = now_us()
    values: dict[str, Any] = {"status": REVIEWED, "outcome": outcome, "reviewer": reviewer, "reviewed_us": now,
                              "note": note}
    grant = get(conn, grant_id)
    if grant is None:
        return None
    if close and grant.expires_us > now:
        values["expires_us"] = now
    conn.execute(update(T).where(T.c.id == grant_id).values(**values))
    return get(conn, grant_id)
