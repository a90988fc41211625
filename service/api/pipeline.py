"""The request pipeline, transport-neutral: authenticate -> route -> unit of work -> Repository -> handler -> audit.

The request's context is frozen once authenticated; what the request touched and decided accumulates in its
`RequestRecord` (filled by the Repository and the policy), from which the audit row is built:
- a write's row is inserted in the write's own transaction (it commits with the write, or neither does);
- a read runs in a read unit (autocommit on PostgreSQL: no BEGIN/COMMIT round trips) and its row goes through
  the audit's group commit, which the response waits for; a read that opened or used a break-glass grant
  writes the grant and its row in one short write unit instead;
- a refused or failed request is audited the same way (a failed write's transaction was rolled back); when the
  database cannot take the row, it is spooled locally and written when the database is back.
A read whose pooled connection turns out to be dead is retried once on a fresh one (no pre-ping per request).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.audit.log import unavailable
from service.audit.rows import access_row
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse, error_response
from service.interactions.router import Route, allowed, route
from service.repository import Repository
from service.wiring import Services

log = logging.getLogger("sharedcare.pipeline")


def handle(req: FhirRequest, services: Services, ctx: RequestContext | None = None,
           record: RequestRecord | None = None) -> FhirResponse:
    """Run one request (`ctx`: already authenticated, e.g. by a page of the service itself)."""
    record = record or RequestRecord()
    try:
        if ctx is None:
            ctx = services.authenticator(req, services)
        r = route(req, services.operations)
        record.interaction = r.interaction
        allowed(req, r)
    except OperationOutcomeError as err:
        resp = error_response(err)
        _audit(services, ctx, record, req, resp)
        return resp
    try:
        try:
            resp = _write(services, r, ctx, record, req) if r.writes else _read(services, r, ctx, record, req)
        except OperationOutcomeError as err:
            resp = error_response(err)  # (a write's unit was rolled back)
            _audit(services, ctx, record, req, resp)
        return resp
    except (OperationalError, DBAPIError) as exc:
        log.exception("database error on %s %s", req.method, req.path)
        if unavailable(exc):
            resp = error_response(OperationOutcomeError(
                503, "transient", "The database is unavailable; try again shortly", headers={"Retry-After": "5"}))
        else:
            resp = error_response(OperationOutcomeError(500, "exception", "Internal error (database); it has been "
                                                                          "logged"))
        _audit(services, ctx, record, req, resp)  # (spooled if the database cannot take it)
        return resp


def _write(services: Services, r: Route, ctx: RequestContext, record: RequestRecord, req: FhirRequest
           ) -> FhirResponse:
    with services.db.write() as conn:
        repo = Repository(services, conn, ctx, record)
        resp = r.call(repo)
        services.after_access(repo, req, resp)
        services.audit.insert(conn, [_row(ctx, record, req, resp)])
    return resp


def _read(services: Services, r: Route, ctx: RequestContext, record: RequestRecord, req: FhirRequest) -> FhirResponse:
    for attempt in (1, 2):
        try:
            with services.db.read() as conn:
                resp = r.call(Repository(services, conn, ctx, record))
            break
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
            log.warning("a pooled database connection was dead; retrying the read on a fresh one")
            record.restart()
    if record.flagged or record.candidates or record.btg_request:
        with services.db.write() as conn:  # break-glass grants are written with the access's row
            services.after_access(Repository(services, conn, ctx, record), req, resp)
            services.audit.insert(conn, [_row(ctx, record, req, resp)])
    else:
        services.audit.commit([_row(ctx, record, req, resp)])
    return resp


def _audit(services: Services, ctx: RequestContext | None, record: RequestRecord, req: FhirRequest,
           resp: FhirResponse) -> None:
    """A refused or failed request's row, on its own (group commit; spooled if the database cannot take it)."""
    try:
        services.audit.commit([_row(ctx, record, req, resp)])
    except Exception:  # (nothing was disclosed: the answer is an error; say so loudly)
        log.exception("the audit row of a refused request could not be written (%s %s -> %s)", req.method, req.path,
                      resp.status)


def _row(ctx: RequestContext | None, record: RequestRecord, req: FhirRequest, resp: FhirResponse):  # type: ignore[no-untyped-def]
    return access_row(ctx, record, method=req.method, path=req.path, params=req.params, status=resp.status,
                      body=resp.body, headers=resp.headers, req_body=req.body)
