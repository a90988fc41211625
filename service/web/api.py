"""The pages' one way to the data: a FhirRequest carrying the session's access token, run through the same
pipeline as the FHIR API (service.api.pipeline.handle: authenticate -> route -> Repository -> policy -> audit).

There is no second data path: a page that shows a care plan makes the same `GET CarePlan?...` an app would, and
its audit row is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from service.api.pipeline import handle
from service.fhir.request import FhirRequest, FhirResponse
from service.web.session import Session


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def problem(self) -> str:
        """The OperationOutcome's diagnostics, joined (for messages turned into plain words by the page)."""
        if isinstance(self.body, dict) and self.body.get("resourceType") == "OperationOutcome":
            return "; ".join(str(i.get("diagnostics") or i.get("code") or "") for i in self.body.get("issue") or [])
        return ""

    def issue_codes(self) -> set[str]:
        if isinstance(self.body, dict) and self.body.get("resourceType") == "OperationOutcome":
            return {str(i.get("code")) for i in self.body.get("issue") or []}
        return set()


def build_request(session: Session, method: str, path: str, params: list[tuple[str, str]] | None = None,
                  body: Any = None, headers: dict[str, str] | None = None, remote: str | None = None,
                  agent: str | None = None) -> FhirRequest:
    hdrs = {"authorization": f"Bearer {session.access_token}", "accept": "application/fhir+json"}
    if agent:
        hdrs["user-agent"] = agent
    if remote:
        hdrs["x-sharedcare-remote"] = remote
    for k, v in (headers or {}).items():
        hdrs[k.lower()] = v
    raw = orjson.dumps(body) if body is not None else None
    return FhirRequest(method=method, path=path.lstrip("/"), params=list(params or []), headers=hdrs, body=raw,
                       content_type="application/fhir+json" if raw is not None else None)


def call_sync(services: Any, req: FhirRequest) -> Answer:
    resp: FhirResponse = handle(req, services)
    try:
        body = resp.json()
    except orjson.JSONDecodeError:
        body = None
    return Answer(resp.status, body, resp.headers)


async def call(services: Any, session: Session, method: str, path: str, params: list[tuple[str, str]] | None = None,
               body: Any = None, headers: dict[str, str] | None = None, remote: str | None = None,
               agent: str | None = None) -> Answer:
    req = build_request(session, method, path, params, body, headers, remote, agent)
    return await anyio.to_thread.run_sync(call_sync, services, req)


def entries(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict):
        return []
    return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"),
                                                                                                    dict)]
