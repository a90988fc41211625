"""Spans inside a FHIR request, attached to one process's services when tracing is on (`attach`): nothing here is
reached when it is off.

- `policy decide` (per resource, for a read, vread, update, patch or delete; and each write's `may_write`) and
  `policy search` (a search's SQL condition, once per type searched or included): the interaction, the resource
  type and the verdict (`permit`, `redacted`, `hidden`, `suppressed`, `refused`); never whose data it is;
- `audit commit`: how long the request waits for its audit rows' group commit (the rows counted, not shown).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode, Tracer

from service.fhir.outcome import OperationOutcomeError
from service.policy.guard import Access, Verdict
from service.search.filter import SearchFilter

PER_RESOURCE = frozenset({"read", "vread", "update", "patch", "delete"})  # (a search's many: its `policy search`)
MARK = "_sharedcare_traced"


def verdict(v: Verdict) -> str:
    if v.error is None:
        return "permit" if v.redact_to is None else "redacted"
    return "hidden" if v.hidden else "suppressed"


def _inside() -> bool:
    """Whether a traced request or job is running here (the web pages' own requests are not traced)."""
    return trace.get_current_span().is_recording()


class TracedAccess(Access):
    """The policy of one unit of work, with a span per decision."""

    tracer: Tracer

    def visibility(self, interaction: str, rtype: str, resource: dict[str, Any], owners: tuple[str, ...]) -> Verdict:
        if self.record.interaction not in PER_RESOURCE or not _inside():
            return super().visibility(interaction, rtype, resource, owners)
        with self.tracer.start_as_current_span("policy decide", attributes={
                "fhir.interaction": interaction, "fhir.resource_type": rtype},
                record_exception=False, set_status_on_exception=False) as span:
            v = super().visibility(interaction, rtype, resource, owners)
            span.set_attribute("sharedcare.policy.verdict", verdict(v))
            return v

    def may_write(self, interaction: str, rtype: str, resource: dict[str, Any], owners: tuple[str, ...],
                  before: dict[str, Any] | None = None) -> None:
        if not _inside():
            return super().may_write(interaction, rtype, resource, owners, before)
        with self.tracer.start_as_current_span("policy decide", attributes={
                "fhir.interaction": interaction, "fhir.resource_type": rtype},
                record_exception=False, set_status_on_exception=False) as span:
            try:
                super().may_write(interaction, rtype, resource, owners, before)
            except OperationOutcomeError as err:
                span.set_attributes({"sharedcare.policy.verdict": "refused", "http.response.status_code": err.status})
                raise
            span.set_attribute("sharedcare.policy.verdict", "permit")

    def search_filter(self, rtype: str) -> SearchFilter | None:
        if not _inside():
            return super().search_filter(rtype)
        with self.tracer.start_as_current_span("policy search", attributes={"fhir.resource_type": rtype},
                                               record_exception=False, set_status_on_exception=False) as span:
            f = super().search_filter(rtype)
            span.set_attribute("sharedcare.policy.verdict", "all" if f is None else "none" if f.deny_all
                               else "filtered")
            return f


def attach(services: Any, tracer: Tracer) -> None:
    """Wrap this process's services (once): the policy binds a TracedAccess; the audit's group commit is timed."""
    if getattr(services, MARK, False):
        return
    guard = services.policy

    def bind(conn: Any, ctx: Any, record: Any, store: Any) -> Access:
        access = TracedAccess(guard, conn, ctx, record, store)
        access.tracer = tracer
        return access

    guard.bind = bind
    audit = services.audit
    commit, acommit = audit.commit, audit.acommit

    def traced_commit(rows: list[Any]) -> None:
        if not _inside():
            return commit(rows)
        with tracer.start_as_current_span("audit commit", attributes={"sharedcare.audit.rows": len(rows)},
                                          record_exception=False, set_status_on_exception=False) as span:
            try:
                commit(rows)
            except Exception as exc:
                span.set_status(StatusCode.ERROR)
                span.set_attribute("error.type", type(exc).__qualname__)
                raise

    async def traced_acommit(rows: list[Any]) -> None:
        if not _inside():
            return await acommit(rows)
        with tracer.start_as_current_span("audit commit", attributes={"sharedcare.audit.rows": len(rows)},
                                          record_exception=False, set_status_on_exception=False) as span:
            try:
                await acommit(rows)
            except Exception as exc:
                span.set_status(StatusCode.ERROR)
                span.set_attribute("error.type", type(exc).__qualname__)
                raise

    audit.commit = traced_commit
    audit.acommit = traced_acommit
    setattr(services, MARK, True)
