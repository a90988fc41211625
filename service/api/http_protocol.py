"""The HTTP/1.1 protocol uvicorn runs, with two changes:
- a request it cannot parse (a request line or headers too long, malformed bytes) is answered with an
  OperationOutcome instead of uvicorn's plain-text 400, so every error a FHIR client sees is one it can read;
- a request's line and headers must arrive within HEADER_SECONDS of the connection opening (or, on a kept-alive
  connection, of the request's first byte), else 408 with an OperationOutcome and the connection is closed.
  uvicorn alone waits for ever on a client that sends a byte a second (its keep-alive timeout only runs between
  requests), so each such client would hold a connection slot for good. A slow body is read on the event loop
  (no thread, no database connection) and bounded by SHAREDCARE_MAX_BODY_BYTES.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.fhir.outcome import Issue, outcome

HEADER_SECONDS = 10.0


class FhirHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline = self.loop.call_later(HEADER_SECONDS, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(HEADER_SECONDS, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        body = orjson.dumps(outcome([Issue(
            "error", "timeout", f"The request line and headers did not arrive within {HEADER_SECONDS:g} seconds")]))
        self._answer_and_close(b"HTTP/1.1 408 Request Timeout\r\n", body)

    def _answer_and_close(self, status_line: bytes, body: bytes) -> None:
        content = [status_line]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/fhir+json\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n", b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(outcome([Issue(
            "error", "structure", f"The HTTP request could not be read ({msg.rstrip('.')}): its request line or "
            "headers are malformed or too long; a long search goes as POST [type]/_search with a form body")]))
        self._answer_and_close(STATUS_LINE[400], body)
