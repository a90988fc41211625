"""Kick-off and status of `$export` (Bulk Data Access 2.0), for the operation handlers in
service/operations/bulk_export.py. Both run inside the request pipeline (authenticated, audited).

- Kick-off (`GET|POST [base]/$export`, `/Patient/$export`, `/Group/{id}/$export`) needs `Prefer: respond-async`;
  its parameters, types, Group and `_typeFilter` searches are checked at once on the request's own repository
  (400/403/404), then the job is queued: 202 with `Content-Location` (the status URL).
- Status (`GET [base]/$export-poll-status?_jobId=...`): 202 with `X-Progress` and `Retry-After` while queued or
  running, 200 with the manifest when done, 500 with an OperationOutcome when it failed; `DELETE` cancels it
  (202) and deletes its files. Only the client that asked (same token subject and client) may see a job: to
  anyone else, and after cancellation or expiry, it does not exist (404).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from service.clock import fhir_instant, http_date, now_us
from service.export import caller, jobs
from service.export.runner import check
from service.export.spec import parse
from service.fhir.outcome import OperationOutcomeError, bad_request, forbidden, information, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.repository import Repository

MAX_ACTIVE = 5  # queued or running exports per client
STATUS_OP = "$export-poll-status"


def status_url(services: Any, jid: str) -> str:
    return f"{services.settings.fhir_base}/{STATUS_OP}?_jobId={jid}"


def file_url(services: Any, jid: str, seq: int) -> str:
    return f"{services.settings.base_url}/export-files/{jid}/{seq}.ndjson"


def _params(req: FhirRequest) -> list[tuple[str, str]]:
    """GET parameters, or a POST's Parameters resource (valueString, valueInstant, valueCode, ...)."""
    if req.method != "POST" or not req.body:
        return list(req.params)
    body = req.json_body()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("A POST $export takes a Parameters resource")
    out = list(req.params)
    for p in body.get("parameter") or ():
        name = (p or {}).get("name")
        value = next((v for k, v in (p or {}).items() if k.startswith("value")), None)
        if not isinstance(name, str) or not isinstance(value, str):
            raise bad_request(f"$export parameter {name!r}: a single primitive value (valueString, valueInstant, "
                              "...) is expected")
        out.append((name, value))
    return out


def kickoff(req: FhirRequest, repo: Repository, level: str, group_id: str | None) -> FhirResponse:
    p = repo.principal
    if p is None:
        raise OperationOutcomeError(401, "login", "An export needs an access token")
    if "respond-async" not in (req.header("prefer") or "").lower():
        raise bad_request("$export runs asynchronously: send the header 'Prefer: respond-async' (FHIR Bulk Data "
                          "Access), then poll the status URL given in Content-Location")
    if "BTG" in repo.ctx.purpose_of_use or repo.ctx.break_glass_reason:
        raise forbidden("Bulk export is not available under break-glass (emergency access is for one person's "
                        "record, for their direct care)")
    params = _params(req)
    request = f"{repo.base}/{req.path}" + (f"?{urlencode(params)}" if params else "")
    spec = parse(params, level, group_id, request)
    repo.require("search-system" if level == "system" else "search-type", None if level == "system" else "Patient")
    check(repo, spec)
    subject, client_id = caller.owner(p)
    with repo.services.db.write() as conn:
        if jobs.active_count(conn, subject, client_id) >= MAX_ACTIVE:
            raise OperationOutcomeError(429, "throttled", f"You have {MAX_ACTIVE} exports queued or running; wait "
                                        "for one to finish, or cancel one (DELETE its status URL)",
                                        headers={"Retry-After": "30"})
        jid = jobs.create(conn, level=level, group_id=group_id, spec=spec.to_json(), owner=subject,
                          client_id=client_id, caller=caller.describe(repo.ctx))
    repo.record.note(f"export: job {jid} queued ({level}{'' if group_id is None else ' Group/' + group_id})")
    url = status_url(repo.services, jid)
    return FhirResponse(202, orjson.dumps(information(f"Export queued; poll {url}")),
                        headers={"Content-Location": url})


def mine(job: jobs.Job, repo: Repository) -> bool:
    p = repo.principal
    return p is not None and (job.owner, job.client_id) == caller.owner(p)


def _job(req: FhirRequest, repo: Repository) -> jobs.Job:
    jid = req.param("_jobId") or ""
    if not jid:
        raise bad_request("Which export? Give _jobId (the status URL from the kick-off's Content-Location)",
                          code="required")
    if len(jid) > 64 or not jid.isalnum():
        raise not_found(f"No export job {jid[:64]!r}")
    with repo.services.db.read() as conn:
        job = jobs.get(conn, jid)
    if job is None or not mine(job, repo) or job.state == "cancelled" or job.expires_us < now_us():
        raise not_found(f"No export job {jid!r} (it never existed, was cancelled, or its files have expired)")
    return job


def status(req: FhirRequest, repo: Repository) -> FhirResponse:
    job = _job(req, repo)
    services = repo.services
    repo.record.note(f"export: job {job.id} {req.method} ({job.state})")
    if req.method == "DELETE":
        if not jobs.cancel(services.db, job.id, services.settings.export_ttl_seconds):
            raise not_found(f"No export job {job.id!r}")
        return FhirResponse(202, orjson.dumps(information(f"Export {job.id} cancelled; its files are deleted")))
    if job.state in jobs.ACTIVE:
        return FhirResponse(202, None, headers={"X-Progress": (job.progress or job.state)[:200],
                                                "Retry-After": "2"})
    if job.state == "failed":
        raise OperationOutcomeError(500, "exception", f"The export failed: {job.error}")
    with services.db.read() as conn:
        files = jobs.files(conn, job.id)
    manifest = {
        "transactionTime": fhir_instant(job.transaction_us or job.created_us),
        "request": orjson.loads(job.spec)["request"],
        "requiresAccessToken": True,
        "output": [{"type": f.res_type, "url": file_url(services, job.id, f.seq), "count": f.count} for f in files],
        "error": [],
    }
    return FhirResponse(200, orjson.dumps(manifest), headers={"Expires": http_date(job.expires_us)})
