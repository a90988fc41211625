"""What a Subscription asks for, checked before it is accepted (R4, https://hl7.org/fhir/R4/subscription.html).

Supported, and nothing else (anything else is refused with 422 when the Subscription is written):
- `channel.type` `rest-hook`, with an absolute http(s) `channel.endpoint` (https, or http to a loopback address;
  plain http elsewhere only in demo mode or with SHAREDCARE_ALLOW_INSECURE_HTTP);
- `channel.payload` absent (a notification with no body) or `application/fhir+json`. R4's rest-hook: "If a
  payload is included, the URL is interpreted as the service base, and an update (PUT) is made" - the resource
  is PUT to `[endpoint]/[type]/[id]`. How much of it goes may be narrowed with the Subscriptions Backport's
  `backport-payload-content` extension on `channel.payload` (`empty` | `id-only` | `full-resource`, default
  full-resource): id-only POSTs to the endpoint a `history` Bundle naming the resource (fullUrl, request and
  response, no content);
- `channel.header`: `Name: value` lines sent with every notification (no line breaks; not the headers the
  server sets itself);
- `criteria`: `Type` or `Type?query`, a search on a stored type with parameters this server supports (checked by
  the search engine exactly as a conditional interaction's criteria are: an unknown parameter is refused);
- `end` (after it, nothing is sent); not `tag` (the server would have to change the resources it matched).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from service.fhir.outcome import OperationOutcomeError
from service.fhir.types import RESOURCE_TYPES

PAYLOAD_CONTENT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
FHIR_JSON = "application/fhir+json"
KINDS = ("empty", "id-only", "full-resource")
NOT_WATCHABLE = {"Subscription", "AuditEvent", "Bundle", "Parameters", "OperationOutcome"}
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
SERVER_HEADERS = {"host", "content-length", "content-type", "transfer-encoding", "connection", "expect", "upgrade",
                  "te", "trailer", "keep-alive", "proxy-authorization", "proxy-connection"}
MAX_HEADERS = 20
MAX_HEADER_LENGTH = 4096
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Spec:
    criteria_type: str
    query: str  # after "Type?"
    params: tuple[tuple[str, str], ...]
    endpoint: str
    payload: str  # empty | id-only | full-resource
    headers: tuple[tuple[str, str], ...]


def unsupported(text: str) -> OperationOutcomeError:
    return OperationOutcomeError(422, "not-supported", text)


def invalid(text: str) -> OperationOutcomeError:
    return OperationOutcomeError(422, "invalid", text)


def parse(resource: dict[str, Any], *, allow_http: bool) -> Spec:
    """The subscription's criteria and channel, or 422 naming what this server will not do."""
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise invalid("Subscription.channel is required (type rest-hook, an endpoint, optionally payload and header)")
    ctype = channel.get("type")
    if ctype != "rest-hook":
        raise unsupported(f"Subscription.channel.type {ctype!r} is not supported: this server only notifies by "
                          "rest-hook (an HTTP POST, or a PUT of the resource, to channel.endpoint)")
    endpoint = _endpoint(channel.get("endpoint"), allow_http)
    payload = _payload(channel)
    headers = _headers(channel.get("header"))
    if resource.get("tag"):
        raise unsupported("Subscription.tag is not supported: this server does not change the resources a "
                          "subscription matches")
    rtype, query, params = _criteria(resource.get("criteria"))
    return Spec(rtype, query, params, endpoint, payload, headers)


def _endpoint(value: Any, allow_http: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("Subscription.channel.endpoint is required for rest-hook: the http(s) URL to notify")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise unsupported(f"Subscription.channel.endpoint {value!r} must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise invalid("Subscription.channel.endpoint must not carry credentials; send them with channel.header")
    if parts.fragment:
        raise invalid("Subscription.channel.endpoint must not have a #fragment")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK and not allow_http:
        raise unsupported(f"Subscription.channel.endpoint {value!r} must be https (notifications carry health "
                          "records and the channel's headers); plain http is allowed only to a loopback address")
    return value


def _payload(channel: dict[str, Any]) -> str:
    mime = channel.get("payload")
    ext = channel.get("_payload") if isinstance(channel.get("_payload"), dict) else {}
    kinds = [e.get("valueCode") for e in ext.get("extension") or () if isinstance(e, dict)
             and e.get("url") == PAYLOAD_CONTENT]
    kind = kinds[0] if kinds else None
    if kind is not None and kind not in KINDS:
        raise invalid(f"The payload content {kind!r} is not one of {', '.join(KINDS)}")
    if mime is None:
        if kind not in (None, "empty"):
            raise invalid(f"Payload content {kind!r} needs Subscription.channel.payload {FHIR_JSON!r}; without a "
                          "payload type notifications have no body")
        return "empty"
    base = str(mime).split(";", 1)[0].strip().lower()
    if base not in (FHIR_JSON, "application/json"):
        raise unsupported(f"Subscription.channel.payload {mime!r} is not supported: use {FHIR_JSON!r}, or leave it "
                          "out for notifications with no body")
    return kind or "full-resource"


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    lines = [value] if isinstance(value, str) else (value or [])
    if not isinstance(lines, list):
        raise invalid("Subscription.channel.header must be a list of 'Name: value' strings")
    if len(lines) > MAX_HEADERS:
        raise invalid(f"Subscription.channel.header has {len(lines)} entries; at most {MAX_HEADERS} are accepted")
    out = []
    for line in lines:
        if not isinstance(line, str) or ":" not in line:
            raise invalid(f"Subscription.channel.header entry {line!r} must be 'Name: value'")
        if len(line) > MAX_HEADER_LENGTH or any(ch in line for ch in "\r\n\0"):
            raise invalid("Subscription.channel.header entries must be single lines of at most "
                          f"{MAX_HEADER_LENGTH} characters")
        name, _, val = line.partition(":")
        name, val = name.strip(), val.strip()
        if not HEADER_NAME.match(name):
            raise invalid(f"Subscription.channel.header {name!r} is not a valid HTTP header name")
        if name.lower() in SERVER_HEADERS:
            raise unsupported(f"Subscription.channel.header may not set {name!r}: the server sets it")
        out.append((name, val))
    return tuple(out)


def _criteria(value: Any) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    if not isinstance(value, str) or not value.strip():
        raise invalid("Subscription.criteria is required: a search such as 'CarePlan?subject=Patient/123'")
    text = value.strip()
    rtype, _, query = text.partition("?")
    if "/" in rtype or rtype not in RESOURCE_TYPES:
        raise unsupported(f"Subscription.criteria {value!r} must start with a resource type, as in "
                          "'CarePlan?subject=Patient/123'")
    if rtype in NOT_WATCHABLE:
        raise unsupported(f"Subscriptions on {rtype} are not supported")
    params = tuple(parse_qsl(query, keep_blank_values=True)) if query else ()
    if query and not params:
        raise invalid(f"Subscription.criteria {value!r} has no search parameters after '?'")
    return rtype, query, params
