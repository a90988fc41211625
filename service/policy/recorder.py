"""The policy's part of a request's audit step (`extras["policy_after"]`, called by the pipeline inside the
write unit that records the request's AuditEvent, just before it): break-glass grants and their flags.

- every access that depended on break-glass (no care relationship, or a consent overridden) is flagged:
  the request's AuditEvent gets purposeOfEvent BTG with the grant's reason, and the grant counts it;
- a BTG request that reached a patient opens a grant (or reuses the open one) and writes a break-glass
  AuditEvent; the grant is the IG review queue's entry.
Searches are decided in SQL, so the patients they returned are read back from the response.
"""

from __future__ import annotations

from typing import Any

from service.audit.events import entry_resources, json_object
from service.auth.compartment import patients_of
from service.interactions.request import FhirRequest, FhirResponse
from service.policy import break_glass, relationships
from service.policy.facts import actor_keys
from service.policy.guard import PolicyState, note
from service.storage.clock import now_us


def returned_patients(resp: FhirResponse) -> set[str]:
    out: set[str] = set()
    doc = json_object(resp.body)
    found = entry_resources(doc) if doc is not None and doc.get("resourceType") == "Bundle" else [doc]
    for r in found:
        if r is None:
            continue
        rtype = r.get("resourceType")
        if isinstance(rtype, str):
            out |= patients_of(rtype, r)
    return out


class AfterAccess:
    def __init__(self, guard: Any) -> None:
        self.guard = guard  # PolicyGuard

    def __call__(self, session: Any, req: FhirRequest, resp: FhirResponse, interaction: str) -> None:
        ctx = session.ctx
        st: PolicyState | None = ctx.__dict__.get("policy_state")
        p = ctx.principal
        if st is None or p is None or resp.status >= 400:
            return
        if not (st.flagged or st.candidates or st.btg_request):
            return
        conn = session.conn
        now = now_us()
        flagged = set(st.flagged)
        check = set(st.touched)
        if st.candidates or st.btg_request:
            check |= returned_patients(resp)
        keys = actor_keys(p)
        for pid in sorted(check - flagged):
            wide = st.btg_request or "*" in st.candidates or pid in st.candidates
            if not wide:
                continue
            if not relationships.has_relationship(conn, pid, keys, now) or pid in st.dependent:
                flagged.add(pid)
        if not flagged:
            return
        reasons: list[str] = []
        for pid in sorted(flagged):
            grant = break_glass.active_grant(conn, p.subject, pid, now)
            if grant is not None:
                break_glass.record_access(conn, grant.id, now)
            elif st.btg_request and ctx.break_glass_reason:
                grant = break_glass.open_grant(conn, ctx, pid, ctx.break_glass_reason,
                                               self.guard.settings.break_glass_minutes * 60)
                from service.audit import record_break_glass

                record_break_glass(conn, ctx, patient=pid, reason=ctx.break_glass_reason,
                                   target=f"Patient/{pid}")
                note(ctx, f"break-glass: grant {grant.id} opened for Patient/{pid} until "
                          f"{grant.expires_us // 1_000_000} (epoch seconds)")
            else:
                continue
            reasons.append(grant.reason)
            note(ctx, f"break-glass: access to Patient/{pid} under grant {grant.id}")
        if reasons:
            if "BTG" not in ctx.purpose_of_use:
                ctx.purpose_of_use = (*ctx.purpose_of_use, "BTG")
            if not ctx.break_glass_reason:
                ctx.break_glass_reason = reasons[0]
