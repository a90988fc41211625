"""The policy's part of a request's audit step (called by the pipeline inside the write unit that records the
request's audit event, just before it): break-glass grants and their flags, from the request's record.

- every access that depended on break-glass (no care relationship, or a consent overridden) is flagged:
  the request's audit event gets purposeOfEvent BTG with the grant's reason, and the grant counts it;
- a BTG request that reached a patient opens a grant (or reuses the open one) and writes a break-glass
  audit event; the grant is the IG review queue's entry.
Searches are decided in SQL; the repository records the owners of everything it returned.
"""

from __future__ import annotations

from typing import Any

from service.clock import now_us
from service.fhir.request import FhirRequest, FhirResponse
from service.policy import break_glass, relationships
from service.policy.facts import actor_keys


class AfterAccess:
    def __init__(self, guard: Any) -> None:
        self.guard = guard  # PolicyGuard

    def __call__(self, repo: Any, req: FhirRequest, resp: FhirResponse) -> None:
        ctx, rec = repo.ctx, repo.record
        p = ctx.principal
        if p is None or resp.status >= 400:
            return
        if not (rec.flagged or rec.candidates or rec.btg_request):
            return
        conn = repo._conn
        now = now_us()
        flagged = set(rec.flagged)
        keys = actor_keys(p)
        for pid in sorted(set(rec.patients) - flagged):
            wide = rec.btg_request or "*" in rec.candidates or pid in rec.candidates
            if not wide:
                continue
            if not relationships.has_relationship(conn, pid, keys, now) or pid in rec.dependent:
                flagged.add(pid)
        if not flagged:
            return
        reasons: list[str] = []
        for pid in sorted(flagged):
            grant = break_glass.active_grant(conn, p.subject, pid, now)
            if grant is not None:
                break_glass.record_access(conn, grant.id, now)
            elif rec.btg_request and ctx.break_glass_reason:
                grant = break_glass.open_grant(conn, ctx, pid, ctx.break_glass_reason,
                                               self.guard.settings.break_glass_minutes * 60)
                from service.audit import record_break_glass

                record_break_glass(conn, ctx, patient=pid, reason=ctx.break_glass_reason,
                                   target=f"Patient/{pid}")
                rec.note(f"break-glass: grant {grant.id} opened for Patient/{pid} until "
                         f"{grant.expires_us // 1_000_000} (epoch seconds)")
            else:
                continue
            reasons.append(grant.reason)
            rec.note(f"break-glass: access to Patient/{pid} under grant {grant.id}")
        if reasons:
            rec.btg_reason = ctx.break_glass_reason or reasons[0]
