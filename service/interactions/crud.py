"""read, vread, create, update, patch and delete (https://hl7.org/fhir/R4/http.html).

Handlers `(FhirRequest, Repository) -> FhirResponse`: they parse what the request says and shape the answer;
the repository decides access, answers for what the caller may not see exactly as for what does not exist,
runs the type's rules, validates and stores.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import jsonpatch

from service.clock import http_date
from service.fhir.outcome import OperationOutcomeError, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import read_response, write_response
from service.fhir.stored import Stored
from service.fhir.types import is_valid_id
from service.fhir.validation import check_shape
from service.repository import Repository
from service.repository.subsetting import subset

PATCH_MEDIA = "application/json-patch+json"


def _resource_body(req: FhirRequest, rtype: str) -> dict[str, Any]:
    return check_shape(req.json_body(), expected_type=rtype)


def read(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    return _answer(req, repo.read(rtype, rid))


def vread(req: FhirRequest, repo: Repository, rtype: str, rid: str, vid: str) -> FhirResponse:
    return _answer(req, repo.vread(rtype, rid, vid))


def _answer(req: FhirRequest, stored: Stored) -> FhirResponse:
    """A version the caller may see (the repository answered 404 for anything else, before any comparison):
    304 when the client's copy is current (If-None-Match, else If-Modified-Since), else the stored bytes,
    subsetted if `_summary`/`_elements` ask."""
    headers = req.headers
    if ("if-none-match" in headers or "if-modified-since" in headers) and not_modified(
            stored, headers.get("if-none-match"), headers.get("if-modified-since")):
        return FhirResponse(304, None, {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)})
    resp = read_response(stored)
    if req.params and stored.content is not None:
        resp.body = subset(stored.content, req.params)
    return resp


def not_modified(stored: Stored, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """RFC 9110 13.1.2-3: If-None-Match (weak comparison, `*` for any) decides when present; otherwise
    If-Modified-Since (an HTTP date; one that cannot be read is ignored) against the version's second."""
    if if_none_match is not None:
        version = str(stored.version)
        for tag in if_none_match.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/").strip('"') == version:
                return True
        return False
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since.strip())
        except (TypeError, ValueError, IndexError):
            return False
        if since is None:
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return stored.last_updated // 1_000_000 <= int(since.timestamp())
    return False


def create(req: FhirRequest, repo: Repository, rtype: str) -> FhirResponse:
    repo.require("create", rtype)
    resource = _resource_body(req, rtype)
    condition = req.header("if-none-exist")
    if condition:
        stored, created = repo.create_unless_exists(resource, condition, assigned_id=req.assigned_id)
        if not created:
            return write_response(req, stored, 200, repo.base, f"{rtype}/{stored.res_id} already exists (If-None-Exist)")
    else:
        stored = repo.create(resource, assigned_id=req.assigned_id)
    return write_response(req, stored, 201, repo.base, f"Created {rtype}/{stored.res_id}")


def update(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    repo.require("update", rtype)
    if not is_valid_id(rid):
        raise bad_request(f"{rid!r} is not a valid FHIR id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')")
    resource = _resource_body(req, rtype)
    body_id = resource.get("id")
    if body_id is None:
        raise bad_request(f"The {rtype} in the body has no id; PUT {rtype}/{rid} needs id {rid!r} in the body")
    if body_id != rid:
        raise bad_request(f"The body's id {body_id!r} does not match the URL's id {rid!r}")
    stored, created = repo.update(rtype, rid, resource, if_match=req.if_match())
    return _updated(req, repo, stored, created)


def _updated(req: FhirRequest, repo: Repository, stored: Any, created: bool) -> FhirResponse:
    what = f"{stored.res_type}/{stored.res_id}"
    return write_response(req, stored, 201 if created else 200, repo.base, f"{'Created' if created else 'Updated'} {what}")


def conditional_update(req: FhirRequest, repo: Repository, rtype: str) -> FhirResponse:
    repo.require("update", rtype)
    resource = _resource_body(req, rtype)
    if not req.params:
        raise bad_request(f"PUT {rtype} needs an id in the URL or search criteria (PUT {rtype}?identifier=...)")
    stored, created = repo.update_matching(rtype, req.params, resource, if_match=req.if_match())
    return _updated(req, repo, stored, created)


def json_patch(ops: Any) -> Any:
    """`apply(current) -> next` for a JSON Patch document (RFC 6902): 422 when it cannot be applied."""
    if not isinstance(ops, list):
        raise bad_request("A JSON Patch document must be a JSON array of operations", code="structure")

    def apply(before: dict[str, Any]) -> dict[str, Any]:
        try:
            return jsonpatch.JsonPatch(ops).apply(before)  # type: ignore[no-any-return]
        except jsonpatch.JsonPatchTestFailed as exc:
            raise OperationOutcomeError(422, "processing", f"JSON Patch test failed: {exc}") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError, KeyError) as exc:
            raise OperationOutcomeError(422, "processing", f"The JSON Patch cannot be applied: {exc}") from None

    return apply


def patch(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    """PATCH in every format the server takes (service/interactions/patch.py)."""
    from service.interactions import patch as patching

    return patching.patch(req, repo, rtype, rid)


def delete(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    stored = repo.delete(rtype, rid, if_match=req.if_match())
    return FhirResponse(204, None, {"ETag": stored.etag} if stored else {})


def conditional_delete(req: FhirRequest, repo: Repository, rtype: str) -> FhirResponse:
    repo.require("delete", rtype)
    if not req.params:
        raise bad_request(f"DELETE {rtype} needs an id or search criteria")
    stored = repo.delete_matching(rtype, req.params)
    return FhirResponse(204, None, {"ETag": stored.etag} if stored else {})
