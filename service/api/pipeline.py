"""The request pipeline, transport-neutral: authenticate -> route -> unit of work -> handler -> audit.

Authentication, the access guard and audit plug in here, before any storage access:
- `Services.extras["authenticate"]`: (FhirRequest, Services) -> RequestContext (raises 401/403);
- the guard (Services.guard) is called by every handler before storage;
- `Services.extras["audit"]`: (Session | None, FhirRequest, FhirResponse, interaction) -> None, called
  inside the write transaction for writes and before the response leaves for reads.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import DBAPIError

from service.access.context import RequestContext
from service.fhir.outcome import OperationOutcomeError
from service.interactions.request import FhirRequest, FhirResponse, error_response
from service.interactions.router import route
from service.interactions.session import Services, Session

log = logging.getLogger("sharedcare.pipeline")


def authenticate(req: FhirRequest, services: Services) -> RequestContext:
    auth = services.extras.get("authenticate")
    if auth is None:
        return RequestContext.system()
    return auth(req, services)


def handle(req: FhirRequest, services: Services, ctx: RequestContext | None = None) -> FhirResponse:
    try:
        if ctx is None:
            ctx = authenticate(req, services)
        r = route(req)
        unit = services.db.write if r.writes else services.db.read
        audit = services.extras.get("audit")
        with unit() as conn:
            session = Session(services, conn, ctx)
            try:
                resp = r.call(session)
            except OperationOutcomeError as err:
                resp = error_response(err)
                if audit is not None:
                    # Record the refusal; the write transaction is rolled back, so audit separately.
                    audit_failure = services.extras.get("audit_failure")
                    if audit_failure is not None:
                        audit_failure(ctx, req, resp, r.interaction)
                raise
            if audit is not None:
                audit(session, req, resp, r.interaction)
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
