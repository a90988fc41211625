"""The ASGI application: the HTTP routes over the services built by service.bootstrap."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import metrics, tracing
from service.access.record import RequestRecord
from service.api import fhir_http, health, openapi
from service.bootstrap import build_services
from service.config import Settings, get_settings
from service.fhir.outcome import Issue, outcome
from service.logging import configure_logging
from service.wiring import Services

log = logging.getLogger("sharedcare.app")

ISSUE_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
              406: "not-supported", 413: "too-costly", 415: "not-supported", 422: "processing", 429: "throttled"}


def _oo(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    body = outcome([Issue("error", ISSUE_CODE.get(status, "exception" if status >= 500 else "invalid"), text)])
    return JSONResponse(body, status_code=status, media_type="application/fhir+json", headers=headers)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging()
    app = FastAPI(title="Shared care record", version="0.1.0", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", lifespan=_lifespan, telemetry=NO_FASTAPI_TELEMETRY)
    app.state.services = services or build_services(settings)
    app.state.services.sealer.start()  # this process seals the audit log every few seconds (a daemon thread)
    app.include_router(health.router)
    metrics.install(app)  # GET /metrics, loopback only
    openapi.install(app)  # /openapi.json: the FHIR API too, built on first use (service/api/openapi.py)
    app.include_router(fhir_http.router)
    # The FHIR API is answered before FastAPI's routing and exception layers (it does its own: every failure is
    # an OperationOutcome); middlewares added later (CORS) still wrap it.
    app.add_middleware(FhirFirst, answer=_traced(app.state.services, settings))
    for installer in app.state.services.app_installers:
        installer(app)
    from service.web import install as install_web

    install_web(app)  # the web pages: a SMART app of this service itself, under /web (service/web/)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        text = {404: f"Nothing at {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return _oo(exc.status_code, text.get(exc.status_code, str(exc.detail)), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _oo(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _oo(500, "Internal error; it has been logged")

    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await app.state.services.audit.aclose()  # (the group commit's connection on this event loop)
    tracing.shutdown()  # (this process's last spans exported)


# FastAPI's own OpenTelemetry spans would carry every URL's path and query (ids, search values): never made. Ours
# are in service/tracing/ (SHAREDCARE_TRACING).
NO_FASTAPI_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}


def _traced(services: Services, settings: Settings) -> Any:
    """The FHIR endpoint, inside a server span when tracing is on (decided here, once per process)."""
    tracer = tracing.start(settings)
    if tracer is None:
        return fhir_http.answer
    from service.tracing import hooks, server

    hooks.attach(services, tracer)
    return server.server_spans(fhir_http.answer, tracer)


class FhirFirst:
    """ASGI middleware: `/fhir` and `/fhir/...` (but the SMART discovery document, which the identity layer's
    routes serve) go straight to the FHIR endpoint."""

    def __init__(self, app: Any, answer: Any = fhir_http.answer) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/fhir" or path.startswith("/fhir/")) \
                or path.startswith("/fhir/.well-known/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.answer(request, RequestRecord())
        except Exception:
            log.exception("unhandled error on %s %s", request.method, path)
            response = _oo(500, "Internal error; it has been logged")
        await response(scope, receive, send)


def app_factory() -> Any:
    """Entry point for uvicorn --factory (each worker builds its own, stateless). What the worker built to serve
    (definitions, models, the services) lives as long as it does, so it is left out of the garbage collector's
    full passes (`gc.freeze`): each pass walked it all and held the interpreter for 50-150 ms every few seconds
    under load, which set the reads' p99."""
    import gc

    from service.fhir.types import RESOURCE_TYPES
    from service.search.params import params_for

    app = create_app()
    for rtype in RESOURCE_TYPES:  # (built on first use otherwise: built now, to be frozen with the rest)
        params_for(rtype)
    gc.collect()
    gc.freeze()
    return app
