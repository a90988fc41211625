"""The HTTP adapter for the FHIR API: HTTP request -> FhirRequest -> pipeline -> HTTP response.

Content rules (https://hl7.org/fhir/R4/http.html#mime-type): JSON (application/fhir+json, application/json) and
XML (application/fhir+xml, converted at this edge by service/fhir/xml.py: the handlers and the store see JSON),
chosen by `_format`, else Accept; `_pretty` for JSON.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.access.record import RequestRecord
from service.api.pipeline import OffLoop, OnLoop, handle
from service.fhir.decimals import redumps
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse, error_response
from service.fhir.types import RESOURCE_TYPES
from service.fhir.xml import XML_TYPES, to_json, to_xml, xml_type_check
from service.interactions.router import point_read, small_search
from service.logging import client_request_id, log_request
from service.metrics import observe_audit_commit, observe_request

router = APIRouter()
log = logging.getLogger("sharedcare.http")

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
BODY_TYPES = JSON_TYPES | {"application/json-patch+json", "application/merge-patch+json",
                           "application/x-www-form-urlencoded"} | XML_TYPES
XML_MEDIA = "application/fhir+xml"
FORMAT_JSON = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


def _media(raw: str | None) -> str | None:
    if not raw:
        return None
    return raw.split(";", 1)[0].strip().lower() or None


XML_FORMATS = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}


def _format_media(fmt: str) -> str:
    """The answer's media type for `_format` (https://hl7.org/fhir/R4/http.html#mime-type), which overrides
    Accept: `json` and the JSON MIME types (a `+` left unencoded in the URL reads as a space); 415 otherwise."""
    f = (_media(fmt.strip().replace(" ", "+")) or "").replace(" ", "+")
    if f in FORMAT_JSON:
        return "application/json" if f in ("application/json", "text/json") else FHIR_JSON
    if f in XML_FORMATS:
        return XML_MEDIA
    raise OperationOutcomeError(415, "not-supported", f"_format={fmt!r} is not supported: use json, "
                                "application/fhir+json, application/json, xml or application/fhir+xml")


def _wants_xml(fmt: str | None, accept: str | None) -> bool:
    if fmt is not None:
        return False  # (_format decides: _format_media)
    if not accept:
        return False
    types = [_media(a) for a in accept.split(",")]
    if any(t in JSON_TYPES or t in ("*/*", "application/*") for t in types):
        return False
    return any(t and "xml" in t for t in types)


def _response_media(accept: str | None) -> str:
    if accept and "application/json" in accept and "fhir+json" not in accept:
        return "application/json"
    return FHIR_JSON


MAX_URL = 16 * 1024  # bytes of path and query; longer searches go as POST [type]/_search (form body)


def to_http(resp: FhirResponse, *, pretty: bool, media: str, head: bool = False, hsts: bool = False) -> Response:
    body = resp.body
    if body is not None and pretty and media != XML_MEDIA:
        body = redumps(orjson.loads(body), body, orjson.OPT_INDENT_2)  # (decimals as stored: service.fhir.decimals)
    headers = dict(resp.headers)
    # Answers may hold personal data: never stored by a browser or a proxy, never sniffed into another type
    headers.setdefault("Cache-Control", "no-store")
    headers["X-Content-Type-Options"] = "nosniff"
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if body is None:
        return Response(status_code=resp.status, headers=headers)
    return Response(content=b"" if head else body, status_code=resp.status, headers=headers,
                    media_type=f"{media}; charset=utf-8")


async def _read_body(request: Request, limit: int, declared: str) -> bytes:
    """The body, refused (413) past `limit` bytes: at once when its Content-Length (`declared`) says so."""
    def too_big() -> OperationOutcomeError:
        return OperationOutcomeError(413, "too-costly", f"The request body is larger than the limit of {limit} "
                                     "bytes (SHAREDCARE_MAX_BODY_BYTES)")

    if declared.isdigit() and int(declared) > limit:
        raise too_big()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big()
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(scope: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The request's headers by (lower-case) name, read once from the ASGI scope: (the last of each name, as the
    handlers get them; the first of each, as Starlette's `headers.get` answers)."""
    last: dict[str, str] = {}
    first: dict[str, str] = {}
    for k, v in scope["headers"]:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        last[name] = value
        first.setdefault(name, value)
    return last, first


def _path(request: Request) -> str:
    """The path after /fhir/ (as Starlette's URL has it: `?`, `#` and `\\` escaped), without building a URL."""
    found = request.path_params.get("path")
    if found:
        return str(found)
    raw = request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return str(raw.removeprefix("/fhir").lstrip("/"))


# Worker threads per process for FHIR requests (SHAREDCARE_REQUEST_THREADS, default 4): one interpreter runs one
# at a time, so threads only overlap database waits; more contend for its lock. Measured on 2 cores (wrk -c32,
# two workers): 8 threads gave 374 creates/s, 4 gave 449, 2 gave 511; searches were the same at 2 to 8 (at 40 both
# were slower and the p99 doubled). The rest wait their turn in the pool's queue.
# A thread pool of the standard library, not anyio's to_thread: its hand-off costs less under the interpreter
# lock (2 cores, wrk -c32, alternated runs: searches 583/534 -> 763/676 req/s, reads and creates alike).
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads(threads: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="fhir")
        return _pool


async def _in_thread(threads: int, fn: Any, *args: Any) -> Any:
    """`fn(*args)` on one of the process's worker threads, in a copy of the caller's context (the request's
    tracing span). The work runs to its end even if the client goes away meanwhile (its audit rows with it)."""
    pool = _pool or _threads(threads)
    ctx = contextvars.copy_context()
    return await asyncio.shield(asyncio.get_running_loop().run_in_executor(pool, ctx.run, fn, *args))


def _inline(services: Any, method: str, path: str, params: list[tuple[str, str]]) -> bool:
    """Whether the event loop runs a request itself: a read by id (one primary-key query), or a small search
    (service.interactions.router.small_search) where the loop's statements have their own bound
    (`Database.loop_bounded`). Handing a request to a thread and back, under one interpreter lock, cost more
    than a small search itself (2 cores, wrk -c32, alternated runs: 568-1022 -> 1357-1437 searches/s)."""
    return point_read(method, path) or (services.db.loop_bounded and small_search(method, path, params))


async def _audited(services: Any, rows: list[Any], resp: FhirResponse) -> FhirResponse:
    """The response, once its audit rows are durable; if they cannot be made so, nothing is disclosed."""
    started = time.perf_counter()
    try:
        await services.audit.acommit(rows)
        observe_audit_commit(time.perf_counter() - started)
    except Exception:
        log.exception("the audit rows of a request could not be written; its answer is withheld")
        if resp.status >= 400:  # (an error discloses nothing: answer it as it was)
            return resp
        return error_response(OperationOutcomeError(500, "exception", "The access could not be recorded, so its "
                                                    "answer is withheld; the error has been logged"))
    return resp


def _as_xml(resp: FhirResponse) -> FhirResponse:
    """The answer in FHIR XML (what XML cannot carry is answered 415 as an OperationOutcome, in XML)."""
    try:
        return FhirResponse(resp.status, to_xml(resp.body or b""), resp.headers)
    except OperationOutcomeError as err:
        failed = error_response(err)
        return FhirResponse(failed.status, to_xml(failed.body or b""), {**failed.headers, **{
            k: v for k, v in resp.headers.items() if k == "X-Request-Id"}})


async def fhir_endpoint(request: Request) -> Response:
    return await answer(request, RequestRecord())


async def answer(request: Request, record: RequestRecord) -> Response:
    """The FHIR endpoint (`record`: what the request touched and decided; service.api.app.FhirFirst calls this,
    inside a server span when tracing is on: service/tracing/server.py)."""
    started = time.perf_counter()
    services = request.app.state.services
    freq: FhirRequest | None = None
    path = _path(request)
    params = parse_qsl(request.scope.get("query_string", b"").decode(), keep_blank_values=True)  # (as Starlette reads it)
    fmt = next((v for k, v in params if k == "_format"), None)
    pretty = next((v for k, v in params if k == "_pretty"), "false") == "true"
    headers, first = _headers(request.scope)
    accept = first.get("accept")
    media = _response_media(accept)
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    try:
        if len(request.scope.get("raw_path") or b"") + len(request.scope.get("query_string") or b"") > MAX_URL:
            raise OperationOutcomeError(414, "too-costly", f"The URL is longer than {MAX_URL} bytes; send a long "
                                        "search as POST [type]/_search with a form body")
        if fmt is not None:
            media = _format_media(fmt)
        elif _wants_xml(fmt, accept):
            media = XML_MEDIA
        if media == XML_MEDIA:
            xml_type_check(path.split("/", 1)[0])  # (a type XML cannot carry: 415 before anything is read)
        content_type = _media(first.get("content-type"))
        body = await _read_body(request, services.settings.max_body_bytes, first.get("content-length", ""))
        if body and content_type is not None and content_type not in BODY_TYPES:
            raise OperationOutcomeError(415, "not-supported", f"Content-Type {content_type!r} is not supported; "
                                        "send application/fhir+json or application/fhir+xml")
        if body and content_type in XML_TYPES:
            body, content_type = to_json(body), FHIR_JSON  # (the handlers see JSON)
        if body:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise OperationOutcomeError(400, "structure", "The body is not valid UTF-8") from None
        if content_type == "application/x-www-form-urlencoded" and request.method == "POST" and path.endswith(
                "_search"):
            params += [(k, v) for k, v in parse_qsl(body.decode(), keep_blank_values=True)
                       if k not in ("_format", "_pretty")]
            body = b""
        method = "GET" if request.method == "HEAD" else request.method
        headers.pop("x-sharedcare-remote", None)  # never taken from a client (it goes into the audit trail)
        if request.client:
            headers["x-sharedcare-remote"] = request.client.host
        freq = FhirRequest(method=method, path=path, params=params, headers=headers,
                           body=body or None, content_type=content_type)
        client_id = client_request_id(headers.get("x-request-id"))  # (the client's, if fit; else generated)
        if client_id:
            freq.request_id = client_id
        if services.audit.awaitable:  # (PostgreSQL)
            on_loop = OnLoop(inline=_inline(services, method, path, params))
            resp = None
            if on_loop.inline:  # this loop runs it, with no thread hand-off
                try:
                    resp = handle(freq, services, None, record, on_loop)
                except OffLoop:  # (its database work outlasted the loop's bound: a worker thread runs it again)
                    record.restart()
                    on_loop = OnLoop()
            if resp is None:
                resp = await _in_thread(services.settings.request_threads, handle, freq, services, None, record,
                                        on_loop)
            if on_loop.rows:
                resp = await _audited(services, on_loop.rows, resp)
        else:
            resp = await _in_thread(services.settings.request_threads, handle, freq, services, None, record)
    except OperationOutcomeError as err:
        resp = error_response(err)
    rid = resp.headers.get("X-Request-Id")
    if rid is None:  # (refused at the edge, before the pipeline)
        rid = resp.headers["X-Request-Id"] = client_request_id(first.get("x-request-id")) or (
            freq.request_id if freq else uuid.uuid4().hex)
    rtype = path.split("/", 1)[0]
    rtype = rtype if rtype in RESOURCE_TYPES else "-"
    took = time.perf_counter() - started
    log_request(rid, request.method, record.interaction, rtype, resp.status, took)
    observe_request(record.interaction, rtype, resp.status, took, record.notes)
    if media == XML_MEDIA and resp.body is not None:
        resp = _as_xml(resp)
    return to_http(resp, pretty=pretty, media=media, head=request.method == "HEAD",
                   hsts=services.settings.base_url.startswith("https://"))


router.add_api_route("/fhir", fhir_endpoint, methods=METHODS, include_in_schema=False)
router.add_api_route("/fhir/{path:path}", fhir_endpoint, methods=METHODS, include_in_schema=False)
