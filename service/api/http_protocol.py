"""The HTTP/1.1 protocol uvicorn runs, with one change: a request it cannot parse (a request line or headers
too long, malformed bytes) is answered with an OperationOutcome instead of uvicorn's plain-text 400, so every
error a FHIR client sees is one it can read."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.fhir.outcome import Issue, outcome


class FhirHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(outcome([Issue(
            "error", "structure", f"The HTTP request could not be read ({msg.rstrip('.')}): its request line or "
            "headers are malformed or too long; a long search goes as POST [type]/_search with a form body")]))
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/fhir+json\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n", b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()
