"""A small OTLP/HTTP trace receiver on a free loopback port, as a collector would be: POST /v1/traces with an
`ExportTraceServiceRequest` (protobuf, optionally gzip), answered 200. Keeps every span it was sent, flattened.
Also runnable on its own (`python -m tests.ops.otlp_receiver PORT`) as a sink for the tracing benchmark."""

from __future__ import annotations

import gzip
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int  # 1 internal, 2 server, 3 client
    status: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start: int  # (nanoseconds since the epoch)
    end: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def text(self) -> str:
        """Everything the span says, as text (for the privacy checks)."""
        return repr((self.name, self.status_message, self.attributes, self.resource, self.events))


class Receiver:
    def __init__(self, port: int = 0, *, decode: bool = True) -> None:
        self.decode = decode  # (False: count the posts only, a sink that costs the machine little)
        self.spans: list[Span] = []
        self.posts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.take(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, body: bytes) -> None:
        if not self.decode:
            with self.lock:
                self.posts += 1
            return
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        got = []
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(Span(s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.kind,
                                    s.status.code, s.status.message, _attrs(s.attributes), resource,
                                    s.start_time_unix_nano, s.end_time_unix_nano,
                                    [(e.name, _attrs(e.attributes)) for e in s.events]))
        with self.lock:
            self.posts += 1
            self.spans.extend(got)

    def wait_for(self, check: Any, seconds: float = 30) -> list[Span]:
        """Until `check(spans)` is true (the spans so far), or fail after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            with self.lock:
                spans = list(self.spans)
            if check(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"the spans expected did not arrive: {sorted({s.name for s in spans})}")
            time.sleep(0.2)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":  # a sink for the benchmark: python -m tests.ops.otlp_receiver PORT
    sink = Receiver(int(sys.argv[1]) if len(sys.argv) > 1 else 4318, decode=False)
    print(f"receiving OTLP traces on {sink.endpoint}", flush=True)
    sink.server.serve_forever()
