"""OpenTelemetry tracing, off unless configured: `SHAREDCARE_TRACING=otlp` (OTLP/HTTP to
`OTEL_EXPORTER_OTLP_ENDPOINT`, default http://localhost:4318) or `console` (spans as JSON on stdout); the
service's name from `OTEL_SERVICE_NAME` (default `sharedcare`); the SDK's own `OTEL_*` variables (sampler, batch
sizes and delays, headers, timeout) apply.

Decided once per process (`start`): when off nothing is wrapped, no listener is attached and no tracer is called,
so a request costs what it did before. When on, each process (every `serve --workers N` worker, spawned; the
supervisor that seals) has its own provider with a `BatchSpanProcessor`, flushed when the process stops
(`shutdown`, from the app's lifespan; at exit otherwise). The provider is private to this service, never the
global one, so libraries that trace whatever the global provider gives them (FastAPI's own request spans carry
the URL's path and query: ids and search values) stay silent.

What spans are made (and what never goes in one) is in service/tracing/server.py (a span per FHIR request),
hooks.py (the policy decision, the audit group commit), statements.py (SQL statements, without parameters) and
`background` (export jobs, subscription deliveries, seal runs: each its own trace). Never personal data: no
resource ids, search values, names, NHS numbers, tokens, bodies or SQL parameters (tests/ops/test_tracing.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("sharedcare.tracing")
NAME = "sharedcare"

_lock = threading.Lock()
_pid = 0  # the process `_tracer` and `_provider` belong to (0: not decided yet in this process)
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def mode(settings: Any = None) -> str:
    """`off`, `otlp` or `console`: `Settings.tracing` (SHAREDCARE_TRACING, validated with the rest)."""
    if settings is None:
        from service.config import get_settings

        settings = get_settings()
    return str(settings.tracing)


def start(settings: Any = None) -> Tracer | None:
    """This process's tracer, set up on the first call in each process (None: tracing is off)."""
    global _pid, _tracer, _provider
    if _pid == os.getpid():
        return _tracer
    with _lock:
        if _pid == os.getpid():
            return _tracer
        chosen = mode(settings)
        _tracer = _provider = None
        if chosen != "off":
            _provider = _make_provider(chosen)
            _tracer = _provider.get_tracer(NAME)
            from service.tracing import statements

            statements.attach()
            log.info("tracing on (%s), service %s", chosen, _service_name())
        _pid = os.getpid()
        return _tracer


def tracer() -> Tracer | None:
    """This process's tracer if tracing is on (None otherwise, or before `start`)."""
    return _tracer if _pid == os.getpid() else None


def shutdown() -> None:
    """Export what is buffered and stop (the app's lifespan: uvicorn's spawned workers skip atexit handlers)."""
    global _tracer, _provider
    provider = _provider if _pid == os.getpid() else None
    if provider is None:
        return
    _tracer = None
    _provider = None
    try:
        provider.shutdown()
    except Exception:  # noqa: BLE001 - (a collector that is away must not fail the shutdown)
        log.warning("tracing: the last spans could not be exported")


def _service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME", "").strip() or NAME


def _make_provider(chosen: str) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporter: SpanExporter
    if chosen == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # (endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*)
    resource = Resource.create({"service.name": _service_name()})  # (plus OTEL_RESOURCE_ATTRIBUTES)
    provider = TracerProvider(resource=resource)  # (the sampler: OTEL_TRACES_SAMPLER, default parent-based on)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@contextmanager
def background(name: str, **attributes: str | int) -> Iterator[Span | None]:
    """A span for background work (an export job, a subscription delivery, a seal run) as its own trace, made
    current so the statements it runs are its children; None (and nothing done) when tracing is off.
    Attributes: counts, types and states only, never ids or content."""
    t = start()
    if t is None:
        yield None
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, StatusCode

    with t.start_as_current_span(name, context=Context(), kind=SpanKind.INTERNAL, attributes=attributes,
                                 record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:  # (the type only: an exception's text may quote data)
            span.set_status(StatusCode.ERROR)
            span.set_attribute("error.type", type(exc).__qualname__)
            raise


def note(**attributes: str | int) -> None:
    """Attributes for the current span of background work (its outcome), when tracing is on."""
    if tracer() is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)


__all__ = ["background", "mode", "note", "shutdown", "start", "tracer"]
