"""The request pipeline, transport-neutral: authenticate -> route -> unit of work -> Repository -> handler -> audit.

The request's context is frozen once authenticated; what the request touched and decided accumulates in its
`RequestRecord` (filled by the Repository and the policy), from which the audit row is built:
- a write's row is inserted in the write's own transaction (it commits with the write, or neither does); on
  PostgreSQL a plain create's row is sent with its write as one statement (`_create`, service/held.py);
- a read runs in a read unit (autocommit on PostgreSQL: no BEGIN/COMMIT round trips) and its row goes through
  the audit's group commit, which the response waits for; a read that opened or used a break-glass grant
  writes the grant and its row in one short write unit instead;
- a refused or failed request is audited the same way (a failed write's transaction was rolled back); when the
  database cannot take the row, it is spooled locally and written when the database is back.
A read whose pooled connection turns out to be dead is retried once on a fresh one (no pre-ping per request).

The HTTP endpoint passes `OnLoop` (PostgreSQL): the rows that would go through the group commit are left in it
for the endpoint to await (`services.audit.acommit`) before the response leaves, and a read by id or a small
search runs on the event loop's own thread and connection (`inline`), with no hand-off to a worker thread; one
that outlasts the loop's statement bound is handed back (`OffLoop`) to run again on a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, OperationalError

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.audit.log import unavailable
from service.audit.rows import AuditRow, access_row
from service.db import timed_out
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse, error_response
from service.held import transaction_on
from service.interactions.router import Route, allowed, route
from service.metrics import observe_audit_commit, observe_replica_read
from service.replica import client_key
from service.repository import Repository
from service.wiring import Services

log = logging.getLogger("sharedcare.pipeline")


@dataclass
class OnLoop:
    """A request whose caller is an event loop: `rows` receives its group-commit rows (the caller awaits them);
    `inline`: it is a read the loop runs itself (a read by id, or a small search: service/api/fhir_http.py)."""

    rows: list[AuditRow] = field(default_factory=list)
    inline: bool = False


class OffLoop(Exception):  # (not an error: a request to move)
    """A read the event loop ran itself outlasted the loop's statement bound (service.db.LOOP_STATEMENT_SECONDS):
    nothing was answered or audited; the caller runs the request again on a worker thread."""


def handle(req: FhirRequest, services: Services, ctx: RequestContext | None = None,
           record: RequestRecord | None = None, on_loop: OnLoop | None = None) -> FhirResponse:
    """Run one request (`ctx`: already authenticated, e.g. by a page of the service itself). The answer carries
    the request's id (`X-Request-Id`), which its audit row has too."""
    resp = _handle(req, services, ctx, record or RequestRecord(), on_loop)
    resp.headers["X-Request-Id"] = ctx.request_id if ctx is not None else req.request_id
    return resp


def _handle(req: FhirRequest, services: Services, ctx: RequestContext | None, record: RequestRecord,
            on_loop: OnLoop | None) -> FhirResponse:
    group = _Group(services, on_loop)
    try:
        if ctx is None:
            ctx = services.authenticator(req, services)
        r = route(req, services.operations)
        record.interaction = r.interaction
        allowed(req, r)
    except OperationOutcomeError as err:
        resp = error_response(err)
        _audit(group, ctx, record, req, resp)
        return resp
    try:
        try:
            resp = _write(services, r, ctx, record, req) if r.writes else _read(services, group, r, ctx, record, req)
        except OperationOutcomeError as err:
            resp = error_response(err)  # (a write's unit was rolled back)
            _audit(group, ctx, record, req, resp)
        return resp
    except (OperationalError, DBAPIError) as exc:
        if timed_out(exc):  # the statement timeout: the request asked too much (or, for a write, waited too long)
            log.warning("statement timeout on %s %s", req.method, req.path)
            limit = services.db.statement_timeout
            resp = error_response(OperationOutcomeError(
                503, "transient", f"The change could not be made within {limit:g} s; try again shortly",
                headers={"Retry-After": "5"}) if r.writes else OperationOutcomeError(
                400, "too-costly", f"This request needs more than the {limit:g}-second limit of database work; "
                                   "narrow it (fewer or more selective parameters, a smaller _count)"))
            _audit(group, ctx, record, req, resp)
            return resp
        log.exception("database error on %s %s", req.method, req.path)
        if unavailable(exc):
            resp = error_response(OperationOutcomeError(
                503, "transient", "The database is unavailable; try again shortly", headers={"Retry-After": "5"}))
        else:
            resp = error_response(OperationOutcomeError(500, "exception", "Internal error (database); it has been "
                                                                          "logged"))
        _audit(group, ctx, record, req, resp)  # (spooled if the database cannot take it)
        return resp


def _write(services: Services, r: Route, ctx: RequestContext, record: RequestRecord, req: FhirRequest
           ) -> FhirResponse:
    if r.creates is not None and services.db.single_writes and Repository.holds_create(services, r.creates):
        return _create(services, r, ctx, record, req)
    with services.db.write() as conn:
        repo = Repository(services, conn, ctx, record)
        resp = r.call(repo)
        services.after_access(repo, req, resp)
        services.audit.insert(conn, [_row(ctx, record, req, resp)])
    if services.db.replica is not None:  # (this client's searches wait for the replica to have it)
        services.db.replica.wrote(client_key(ctx))
    return resp


def _create(services: Services, r: Route, ctx: RequestContext, record: RequestRecord, req: FhirRequest
            ) -> FhirResponse:
    """A plain create (PostgreSQL): in autocommit, its one write held back (service/held.py) and sent with its
    audit row as one statement, its own transaction. When more must be written with them (a break-glass grant, a
    subscription's delivery, a row's pointers to several patients), all of it goes in a transaction on the same
    connection instead. A refusal, or an error before the write is sent, has written nothing."""
    with services.db.single() as conn:
        repo = Repository(services, conn, ctx, record)
        resp = r.call(repo)
        alone = not (record.flagged or record.candidates or record.btg_request)
        if not (alone and services.audit.insert_with_held(conn, _row(ctx, record, req, resp))):
            with transaction_on(conn):
                services.after_access(repo, req, resp)
                services.audit.insert(conn, [_row(ctx, record, req, resp)])
    if services.db.replica is not None:
        services.db.replica.wrote(client_key(ctx))
    return resp


REPLICA_READS = frozenset({"search-type", "search-system", "search-compartment"})  # (AuditEvent's: the primary)


def _read(services: Services, group: _Group, r: Route, ctx: RequestContext, record: RequestRecord, req: FhirRequest
          ) -> FhirResponse:
    on_replica = False
    if services.db.replica is not None and r.interaction in REPLICA_READS and "AuditEvent" not in req.path:
        on_replica = services.db.replica.usable_for(client_key(ctx))
        observe_replica_read(on_replica)
    attempt = 1
    while True:
        try:
            with services.db.read(on_loop=group.inline, replica=on_replica) as conn:
                resp = r.call(Repository(services, conn, ctx, record))
            break
        except DBAPIError as exc:
            if group.inline and timed_out(exc):
                raise OffLoop from exc
            if on_replica and services.db.replica is not None and not timed_out(exc):
                services.db.replica.failed(exc)  # (never an error to the user: the primary answers)
                on_replica = False
                record.restart()
                continue
            if attempt == 2 or not exc.connection_invalidated:
                raise
            attempt = 2
            log.warning("a pooled database connection was dead; retrying the read on a fresh one")
            record.restart()
    if record.flagged or record.candidates or record.btg_request:
        with services.db.write() as conn:  # break-glass grants are written with the access's row
            services.after_access(Repository(services, conn, ctx, record), req, resp)
            services.audit.insert(conn, [_row(ctx, record, req, resp)])
        if services.db.replica is not None:
            services.db.replica.wrote(client_key(ctx))
    else:
        group.commit(_row(ctx, record, req, resp))
    return resp


class _Group:
    """The group commit, now (blocking) or by the caller (`OnLoop`)."""

    def __init__(self, services: Services, on_loop: OnLoop | None) -> None:
        self.services = services
        self.on_loop = on_loop
        self.inline = on_loop is not None and on_loop.inline

    def commit(self, row: AuditRow) -> None:
        if self.on_loop is not None:
            self.on_loop.rows.append(row)
        else:
            started = time.perf_counter()
            self.services.audit.commit([row])
            observe_audit_commit(time.perf_counter() - started)


def _audit(group: _Group, ctx: RequestContext | None, record: RequestRecord, req: FhirRequest,
           resp: FhirResponse) -> None:
    """A refused or failed request's row, on its own (group commit; spooled if the database cannot take it)."""
    try:
        group.commit(_row(ctx, record, req, resp))
    except Exception:  # (nothing was disclosed: the answer is an error; say so loudly)
        log.exception("the audit row of a refused request could not be written (%s %s -> %s)", req.method, req.path,
                      resp.status)


def _row(ctx: RequestContext | None, record: RequestRecord, req: FhirRequest, resp: FhirResponse) -> AuditRow:
    row = access_row(ctx, record, method=req.method, path=req.path, params=req.params, status=resp.status,
                     body=resp.body, headers=resp.headers, req_body=req.body)
    if row.request_id is None:  # (refused before anyone was authenticated)
        row.request_id = req.request_id
    return row
