"""The request pipeline, transport-neutral: authenticate -> route -> unit of work -> handler -> audit.

Authentication, the access guard and audit plug in here, before any storage access:
- `Services.extras["authenticate"]`: (FhirRequest, Services) -> RequestContext (raises 401/403);
- the guard (Services.guard) is called by every handler before storage;
- `Services.extras["audit"]`: (Session, FhirRequest, FhirResponse, interaction) -> None, called inside
  the write transaction for writes, and for reads in a short write unit of its own before the response
  leaves; `Services.extras["audit_failure"]`: (RequestContext | None, FhirRequest, FhirResponse,
  interaction) -> None, for refusals and failures (it opens its own unit);
  `Services.extras["audit_precheck"]`: (FhirRequest, interaction) -> None, may refuse before storage;
  `Services.extras["policy_after"]`: (Session, FhirRequest, FhirResponse, interaction) -> None, the access
  policy's part of the audit step (break-glass grants and flags), called just before `audit` in its unit.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from service.access.context import RequestContext
from service.fhir.outcome import OperationOutcomeError
from service.interactions.request import FhirRequest, FhirResponse, error_response
from service.interactions.router import route
from service.interactions.session import Services, Session

log = logging.getLogger("sharedcare.pipeline")


def authenticate(req: FhirRequest, services: Services) -> RequestContext:
    """Who is asking. An authenticator with `check_in_unit` defers its database checks (token revocation)
    to the request's own unit of work, where `handle` runs them before the handler."""
    auth = services.extras.get("authenticate")
    if auth is None:
        return RequestContext.system()
    if hasattr(auth, "check_in_unit"):
        return auth(req, services, defer=True)
    return auth(req, services)


def handle(req: FhirRequest, services: Services, ctx: RequestContext | None = None) -> FhirResponse:
    """Run one request. Audit: a write is audited inside its own transaction; a read is audited in a
    short write unit of its own right after the read unit, before the response is returned; a refused
    or failed request is audited in its own unit (a failed write's transaction has been rolled back).
    If the audit cannot be written, the request fails (503/500): no access goes unrecorded."""
    audit = services.extras.get("audit")
    audit_failure = services.extras.get("audit_failure")
    interaction = "unknown"
    try:
        try:
            if ctx is None:
                ctx = authenticate(req, services)
            r = route(req)
            interaction = r.interaction
            precheck = services.extras.get("audit_precheck")
            if precheck is not None:
                precheck(req, interaction)
        except OperationOutcomeError as err:
            resp = error_response(err)
            if audit_failure is not None:
                audit_failure(ctx, req, resp, interaction)
            return resp
        failed: FhirResponse | None = None
        # On PostgreSQL a read and its audit share one transaction (one commit); on SQLite the audit takes
        # the database's single write lock in a short unit of its own, so reads stay concurrent.
        together = not r.writes and audit is not None and services.db.is_postgres
        unit = services.db.write if r.writes or together else services.db.read
        after = services.extras.get("policy_after")
        try:
            with unit() as conn:
                if "revocation_pending" in ctx.__dict__:
                    services.extras["authenticate"].check_in_unit(conn, ctx)
                session = Session(services, conn, ctx)
                resp = r.call(session)
                if (r.writes or together) and audit is not None:
                    if after is not None:
                        after(session, req, resp, interaction)
                    audit(session, req, resp, interaction)  # same transaction as the interaction
        except OperationOutcomeError as err:
            failed = resp = error_response(err)  # the unit was rolled back
        if audit is not None:
            if failed is not None and r.writes:
                if audit_failure is not None:
                    audit_failure(ctx, req, failed, interaction)
            elif not r.writes and (failed is not None or not together):
                with services.db.write() as conn:  # a short unit of its own: no lock upgrade on SQLite
                    audit_session = Session(services, conn, ctx)
                    if after is not None:
                        after(audit_session, req, resp, interaction)  # break-glass grants and flags
                    audit(audit_session, req, resp, interaction)
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
