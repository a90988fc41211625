"""The request pipeline, transport-neutral: authenticate -> route -> unit of work -> Repository -> handler -> audit.

The request's context is frozen once authenticated; what the request touched and decided accumulates in its
`RequestRecord` (filled by the Repository and the policy), which the audit consumes:
- a write is audited inside its own transaction (the audit row commits with the write, or not at all);
- a read is audited before its response leaves: on PostgreSQL in the read's own transaction (one commit), on
  SQLite in a short write unit of its own (reads stay concurrent; the audit takes the single write lock);
- a refused or failed request is audited in a unit of its own (a failed write's transaction was rolled back).
If the audit cannot be written the request fails (503/500): no access goes unrecorded.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse, error_response
from service.interactions.router import allowed, route
from service.repository import Repository
from service.wiring import Services

log = logging.getLogger("sharedcare.pipeline")


def handle(req: FhirRequest, services: Services, ctx: RequestContext | None = None,
           record: RequestRecord | None = None) -> FhirResponse:
    """Run one request (`ctx`: already authenticated, e.g. by a page of the service itself)."""
    record = record or RequestRecord()
    try:
        try:
            if ctx is None:
                ctx = services.authenticator(req, services, defer=True)
            r = route(req, services.operations)
            record.interaction = r.interaction
            allowed(req, r)
        except OperationOutcomeError as err:
            resp = error_response(err)
            services.audit.on_failure(ctx, record, req, resp)
            return resp
        failed: FhirResponse | None = None
        # On PostgreSQL a read and its audit share one transaction (one commit); on SQLite the audit takes
        # the database's single write lock in a short unit of its own, so reads stay concurrent.
        together = not r.writes and services.db.is_postgres
        unit = services.db.write if r.writes or together else services.db.read
        try:
            with unit() as conn:
                if ctx.revocation is not None:
                    services.authenticator.check_in_unit(conn, ctx)
                repo = Repository(services, conn, ctx, record)
                resp = r.call(repo)
                if r.writes or together:
                    services.after_access(repo, req, resp)
                    services.audit.on_interaction(repo, req, resp)  # same transaction as the interaction
        except OperationOutcomeError as err:
            failed = resp = error_response(err)  # the unit was rolled back
        if failed is not None and r.writes:
            services.audit.on_failure(ctx, record, req, failed)
        elif not r.writes and (failed is not None or not together):
            with services.db.write() as conn:  # a short unit of its own: no lock upgrade on SQLite
                repo = Repository(services, conn, ctx, record)
                services.after_access(repo, req, resp)  # break-glass grants and flags
                services.audit.on_interaction(repo, req, resp)
        return resp
    except OperationOutcomeError as err:
        return error_response(err)
    except (OperationalError, DBAPIError) as exc:
        log.exception("database error on %s %s", req.method, req.path)
        if _is_unavailable(exc):
            return error_response(OperationOutcomeError(
                503, "transient", "The database is unavailable; try again shortly", headers={"Retry-After": "5"}))
        return error_response(OperationOutcomeError(500, "exception", "Internal error (database); it has been logged"))


def _is_unavailable(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("connection", "could not connect", "server closed", "database is locked",
                                    "terminating"))
