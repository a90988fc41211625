"""The server span of a FHIR request, around the HTTP endpoint (chosen once, when the app is built, by
service.api.app: with tracing off the endpoint is called as it is).

Named by interaction and type (`read Patient`, `search-type CarePlan`, `create Observation`, `capabilities`);
attributes `http.request.method`, `http.response.status_code`, `fhir.interaction`, `fhir.resource_type` and
`sharedcare.request_id` (the `X-Request-Id` answered, the audit row's). An incoming W3C `traceparent` is the
parent. Status ERROR for a 5xx. Never the path, the query, a header's value or a body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.access.record import RequestRecord
from service.fhir.types import RESOURCE_TYPES

Answer = Callable[[Any, RequestRecord], Awaitable[Any]]
_PROPAGATOR = TraceContextTextMapPropagator()  # (traceparent and tracestate; baggage is not taken)


def resource_type(path: str) -> str | None:
    head = path.removeprefix("/fhir").lstrip("/").split("/", 1)[0]
    return head if head in RESOURCE_TYPES else None


def server_spans(answer: Answer, tracer: Tracer) -> Answer:
    """`answer(request, record)` inside a server span."""

    async def traced(request: Any, record: RequestRecord) -> Any:
        parent = _PROPAGATOR.extract(request.headers)
        method = request.method
        span = tracer.start_span("FHIR", context=parent, kind=SpanKind.SERVER,
                                 attributes={"http.request.method": method})
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        response = None
        try:
            response = await answer(request, record)
            return response
        except BaseException as exc:
            span.set_status(StatusCode.ERROR)
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            otel_context.detach(token)
            rtype = resource_type(request.url.path)
            interaction = record.interaction
            span.update_name(f"{interaction} {rtype}" if rtype else interaction)
            attributes: dict[str, Any] = {"fhir.interaction": interaction}
            if rtype:
                attributes["fhir.resource_type"] = rtype
            if response is not None:
                status = response.status_code
                attributes["http.response.status_code"] = status
                rid = response.headers.get("x-request-id")
                if rid:
                    attributes["sharedcare.request_id"] = rid
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                    attributes["error.type"] = str(status)
            span.set_attributes(attributes)
            span.end()

    return traced
