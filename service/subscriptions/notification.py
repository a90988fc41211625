"""The HTTP request of one notification, per R4 rest-hook (https://hl7.org/fhir/R4/subscription.html):

- payload absent (`empty`): POST to the endpoint with no body ("MIME type to send, or omit for no payload");
- `full-resource` (payload `application/fhir+json`): "If a payload is included, the URL is interpreted as the
  service base, and an update (PUT) is made": PUT `[endpoint]/[type]/[id]` with the resource, exactly as stored
  (and as the owner may see it);
- `id-only` (the Backport's payload-content extension; R4 itself has no such kind): POST to the endpoint a
  `history` Bundle with one entry naming the resource (fullUrl, request, response with its version), no content.
Every configured `channel.header` goes with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from service.clock import fhir_instant, now_us
from service.fhir.stored import Stored
from service.subscriptions.spec import FHIR_JSON


@dataclass(frozen=True)
class Notification:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


def build(endpoint: str, payload: str, headers: list[list[str]], stored: Stored, event: str, base: str
          ) -> Notification:
    out = {name: value for name, value in headers}
    if payload == "full-resource":
        out["Content-Type"] = FHIR_JSON
        return Notification("PUT", f"{endpoint.rstrip('/')}/{stored.res_type}/{stored.res_id}", out, stored.content)
    if payload == "id-only":
        out["Content-Type"] = FHIR_JSON
        return Notification("POST", endpoint, out, orjson.dumps(id_only_bundle(stored, event, base)))
    return Notification("POST", endpoint, out, None)


def id_only_bundle(stored: Stored, event: str, base: str) -> dict[str, Any]:
    created = event == "create"
    ref = f"{stored.res_type}/{stored.res_id}"
    return {
        "resourceType": "Bundle", "type": "history", "timestamp": fhir_instant(now_us()),
        "entry": [{
            "fullUrl": f"{base}/{ref}",
            "request": {"method": "POST" if created else "PUT", "url": stored.res_type if created else ref},
            "response": {"status": "201 Created" if created else "200 OK", "location": f"{ref}/_history/"
                         f"{stored.version}", "etag": stored.etag, "lastModified": fhir_instant(stored.last_updated)},
        }],
    }
