"""Building FHIR responses from stored versions, honouring Prefer: return=..."""

from __future__ import annotations

import orjson

from service.clock import http_date
from service.fhir.outcome import Issue, information, outcome_bytes
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored


def version_headers(stored: Stored, base: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.last_updated),
        "Location": f"{base}/{stored.res_type}/{stored.res_id}/_history/{stored.version}",
    }


def read_response(stored: Stored) -> FhirResponse:
    return FhirResponse(200, stored.content, {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)})


def write_response(req: FhirRequest, stored: Stored, status: int, base: str, message: str) -> FhirResponse:
    headers = version_headers(stored, base)
    prefer = req.prefer.get("return", "representation").lower()
    if prefer == "minimal":
        return FhirResponse(status, None, headers)
    if prefer == "operationoutcome":
        return FhirResponse(status, orjson.dumps(information(message)), headers)
    return FhirResponse(status, stored.content, headers)


def outcome_response(status: int, text: str, code: str = "informational", severity: str = "information") -> FhirResponse:
    return FhirResponse(status, outcome_bytes([Issue(severity, code, text)]))
