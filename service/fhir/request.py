"""The transport-neutral request and response the FHIR handlers work with."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.fhir.decimals import attach
from service.fhir.outcome import OperationOutcomeError, bad_request


@dataclass
class FhirRequest:
    method: str
    path: str  # relative to the FHIR base, without leading slash, e.g. "Patient/123/_history/2"
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes | None = None
    content_type: str | None = None  # media type without parameters, or None
    # Set only by Bundle processing: the id a create must use, planned before any entry is written
    # so that urn:uuid references can be rewritten up front (never taken from a client).
    assigned_id: str | None = None
    # This request's id: in its audit row and its answer's X-Request-Id (never taken from a client)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    def json_body(self) -> Any:
        if not self.body:
            raise bad_request("The request has no body; a FHIR resource (JSON) was expected", code="required")
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"The body is not valid JSON: {exc}", code="structure") from None
        if b"\\u00" in self.body:
            m = _CONTROL_ESCAPE.search(self.body)
            if m is not None:
                raise bad_request(f"The body holds a control character ({m.group(2).decode()}) in a string; FHIR strings "
                                  "may hold no control characters other than tab, carriage return and line feed",
                                  code="value")
        return attach(parsed, self.body)  # the client's decimal literals ride along (service.fhir.decimals)

    @property
    def prefer(self) -> dict[str, str]:
        raw = self.header("prefer") or ""
        out: dict[str, str] = {}
        for part in raw.split(","):
            for item in part.split(";"):
                if "=" in item:
                    k, v = item.split("=", 1)
                    out[k.strip().lower()] = v.strip().strip('"')
        return out

    def if_match(self) -> int | None:
        return parse_etag(self.header("if-match"), "If-Match")


# A JSON escape of a control character (U+0000-U+001F but tab, LF and CR; U+007F) whose backslash is not itself
# escaped. Raw control characters are not valid JSON at all.
_CONTROL_ESCAPE = re.compile(rb'(?<!\\)((?:\\\\)*)\\(u00(?:0[0-8bBcCeEfF]|1[0-9a-fA-F]|7[fF]))')


def parse_etag(raw: str | None, header: str) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    value = value.removeprefix("W/")
    value = value.strip('"')
    if not value.isdigit():
        raise bad_request(f"{header} {raw!r} is not a version ETag such as W/\"3\"", code="value")
    return int(value)


@dataclass
class FhirResponse:
    status: int
    body: bytes | None = None  # JSON bytes, served as they are
    headers: dict[str, str] = field(default_factory=dict)
    resource: dict[str, Any] | None = None  # parsed form, when a caller (a Bundle) needs it

    def json(self) -> Any:
        if self.resource is not None:
            return self.resource
        return orjson.loads(self.body) if self.body else None


def error_response(err: OperationOutcomeError) -> FhirResponse:
    return FhirResponse(err.status, err.body(), dict(err.headers))
