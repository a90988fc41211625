"""Serving an export's files: `GET [base_url]/export-files/{job}/{n}.ndjson` (application/fhir+ndjson).

Outside the FHIR endpoint (the file is not a FHIR resource), but the same door keepers: the bearer token is
verified by the same authenticator; only the client that asked (same token subject and client) gets a file of a
finished, unexpired, uncancelled job, anyone else 404 exactly as for a file that does not exist. Every download,
refused or not, leaves one audit row (`operation:export-file`) naming the people whose data the file holds, in
the audit log before the first byte leaves. The file is streamed from its chunks, one chunk in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.audit.rows import access_row
from service.clock import now_us
from service.export import caller, jobs
from service.fhir.outcome import OperationOutcomeError, not_found
from service.fhir.request import FhirRequest

log = logging.getLogger("sharedcare.export")
NDJSON = "application/fhir+ndjson"
SAFE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _find(services: Any, ctx: RequestContext, jid: str, seq: int) -> Any:
    """The file row, if the caller may have it; else 404 (hidden and missing alike)."""
    missing = not_found(f"No export file {jid[:64]}/{seq}")
    if not jid.isalnum() or len(jid) > 64:
        raise missing
    with services.db.read() as conn:
        job = jobs.get(conn, jid)
        p = ctx.principal
        if job is None or p is None or (job.owner, job.client_id) != caller.owner(p) or job.state != "done" \
                or job.expires_us < now_us():
            raise missing
        row = jobs.file_row(conn, jid, seq)
    if row is None:
        raise missing
    return row


def _chunks(services: Any, jid: str, seq: int) -> Iterator[bytes]:
    n = 0
    while True:
        with services.db.read() as conn:
            data = jobs.chunk(conn, jid, seq, n)
        if data is None:
            return
        yield data
        n += 1


def _prepare(services: Any, req: FhirRequest, jid: str, seq: int) -> tuple[Any, Any]:
    """(the file row, or an OperationOutcomeError; the audit row)."""
    record = RequestRecord(interaction="operation:export-file")
    ctx = None
    try:
        ctx = services.authenticator(req, services)
        row = _find(services, ctx, jid, seq)
        record.touch(row.patients.split())
        record.note(f"export: job {jid} file {seq}: {row.count} {row.res_type}")
        status, result = 200, row
    except OperationOutcomeError as err:
        status, result = err.status, err
    audit = access_row(ctx, record, method="GET", path=req.path, params=[], status=status,
                       body=result.body() if isinstance(result, OperationOutcomeError) else None, headers={})
    if audit.request_id is None:
        audit.request_id = req.request_id
    return result, audit


async def download(request: Request) -> Response:
    services = request.app.state.services
    jid = request.path_params["job"]
    name = request.path_params["name"]
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers.pop("x-sharedcare-remote", None)
    if request.client:
        headers["x-sharedcare-remote"] = request.client.host
    req = FhirRequest("GET", f"$export-file/{jid}/{name}", [], headers)
    seq = int(name.removesuffix(".ndjson")) if name.removesuffix(".ndjson").isdigit() else -1
    result, audit = await anyio.to_thread.run_sync(_prepare, services, req, jid, seq)
    if services.audit.awaitable:
        await services.audit.acommit([audit])
    else:
        await anyio.to_thread.run_sync(services.audit.commit, [audit])
    if isinstance(result, OperationOutcomeError):
        return JSONResponse(orjson_loads(result.body()), status_code=result.status,
                            headers={**SAFE_HEADERS, **result.headers}, media_type="application/fhir+json")
    return StreamingResponse(_chunks(services, jid, seq), media_type=NDJSON,
                             headers={**SAFE_HEADERS, "Content-Length": str(result.bytes),
                                      "X-Request-Id": req.request_id})


def orjson_loads(body: bytes) -> Any:
    import orjson

    return orjson.loads(body)


def install(app: Any) -> None:
    app.add_api_route("/export-files/{job}/{name}", download, methods=["GET"], include_in_schema=False)
