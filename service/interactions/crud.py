"""read, vread, create, update, patch and delete (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson

from service.fhir.outcome import OperationOutcomeError, bad_request, not_found, precondition_failed
from service.fhir.types import is_valid_id
from service.fhir.validation import validate_resource
from service.interactions.request import FhirRequest, FhirResponse
from service.interactions.responses import read_response, write_response
from service.interactions.session import Session
from service.storage.store import Stored


def _check_id(rtype: str, rid: str) -> None:
    if not is_valid_id(rid):
        raise not_found(f"{rtype}/{rid} is not known ({rid!r} is not a valid FHIR id)")


def visible(session: Session, interaction: str, stored: Stored) -> Stored:
    """Apply the per-resource guard; a resource the caller may not see looks like one that does not exist
    (a guard with `read_error` may answer otherwise, e.g. 403 `suppressed` to someone who may know it exists)."""
    if stored.content is None:
        return stored
    read_error = getattr(session.guard, "read_error", None)
    if read_error is not None:
        err = read_error(session.ctx, interaction, stored.res_type, stored.json())
        if err is not None:
            raise err
    elif not session.guard.can_see(session.ctx, stored.res_type, stored.json()):
        raise not_found(f"{stored.res_type}/{stored.res_id} is not known")
    return stored


def _hidden_match(session: Session, rtype: str, rid: str, what: str) -> None:
    """A conditional interaction that matched a resource the caller may not see answers 412 without naming
    it (neither its id nor a 404 that would confirm it), and changes nothing."""
    cur = session.store.current(session.conn, rtype, rid)
    if cur is None or cur.content is None:
        return
    try:
        visible(session, "read", cur)
    except OperationOutcomeError as err:
        if err.status in (403, 404):
            raise precondition_failed(f"{what}: the criteria match a {rtype} you may not see; nothing was "
                                      "changed") from None
        raise


def read(req: FhirRequest, session: Session, rtype: str, rid: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "read", rtype)
    _check_id(rtype, rid)
    stored = visible(session, "read", session.store.read(session.conn, rtype, rid))
    return read_response(stored)


def vread(req: FhirRequest, session: Session, rtype: str, rid: str, vid: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "vread", rtype)
    _check_id(rtype, rid)
    if not vid.isdigit():
        raise not_found(f"{rtype}/{rid} has no version {vid!r} (versions are whole numbers)")
    stored = visible(session, "vread", session.store.vread(session.conn, rtype, rid, int(vid)))
    return read_response(stored)


def _write_hooks(session: Session, rtype: str) -> tuple[Any, ...]:
    """Per-type write hooks (`Services.extras["write_hooks"]`: {type: [hook]}), e.g. the workflow rules.

    A hook has `before(session, rtype, before, after)` (may refuse by raising OperationOutcomeError, or
    complete `after` with server-owned elements) and `after(session, rtype, stored, before)` (runs after
    the store wrote the version, in the same transaction). `before` is None on create.
    """
    return tuple(session.services.extras.get("write_hooks", {}).get(rtype, ()))


def _create(session: Session, rtype: str, resource: dict[str, Any], rid: str | None = None) -> Stored:
    hooks = _write_hooks(session, rtype)
    for hook in hooks:
        hook.before(session, rtype, None, resource)
    stored = session.store.create(session.conn, resource, rid=rid)
    for hook in hooks:
        hook.after(session, rtype, stored, None)
    return stored


def _resource_body(req: FhirRequest, rtype: str) -> dict[str, Any]:
    body = req.json_body()
    validate_resource(body, expected_type=rtype)
    return body


def create(req: FhirRequest, session: Session, rtype: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "create", rtype)
    resource = _resource_body(req, rtype)
    session.guard.check_resource(session.ctx, "create", rtype, resource)
    condition = req.header("if-none-exist")
    if condition:
        ids = session.services.search.find_ids(session, rtype, condition)
        if len(ids) > 1:
            raise precondition_failed(
                f"If-None-Exist {condition!r} matched {len(ids)} {rtype} resources; it must match at most one")
        if len(ids) == 1:
            _hidden_match(session, rtype, ids[0], "If-None-Exist")
            stored = visible(session, "read", session.store.read(session.conn, rtype, ids[0]))
            resp = write_response(req, stored, 200, session.base, f"{rtype}/{ids[0]} already exists (If-None-Exist)")
            return resp
    resource.pop("id", None)  # the server assigns ids on create
    stored = _create(session, rtype, resource, req.assigned_id)
    return write_response(req, stored, 201, session.base, f"Created {rtype}/{stored.res_id}")


def update(req: FhirRequest, session: Session, rtype: str, rid: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "update", rtype)
    if not is_valid_id(rid):
        raise bad_request(f"{rid!r} is not a valid FHIR id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')")
    resource = _resource_body(req, rtype)
    body_id = resource.get("id")
    if body_id is None:
        raise bad_request(f"The {rtype} in the body has no id; PUT {rtype}/{rid} needs id {rid!r} in the body")
    if body_id != rid:
        raise bad_request(f"The body's id {body_id!r} does not match the URL's id {rid!r}")
    return _do_update(req, session, rtype, rid, resource, req.if_match())


def _do_update(req: FhirRequest, session: Session, rtype: str, rid: str, resource: dict[str, Any],
               if_match: int | None, method: str = "PUT") -> FhirResponse:
    hooks = _write_hooks(session, rtype)
    current = session.store.current(session.conn, rtype, rid, lock=bool(hooks))
    if current is not None and current.content is not None:
        visible(session, "update", current)
        session.guard.check_resource(session.ctx, "update", rtype, current.json())
    session.guard.check_resource(session.ctx, "update", rtype, resource)
    before = current.json() if current is not None and current.content is not None else None
    for hook in hooks:
        hook.before(session, rtype, before, resource)
    stored, created = session.store.update(session.conn, resource, rid, if_match=if_match, method=method)
    for hook in hooks:
        hook.after(session, rtype, stored, before)
    status = 201 if created else 200
    return write_response(req, stored, status, session.base, f"{'Created' if created else 'Updated'} {rtype}/{rid}")


def conditional_update(req: FhirRequest, session: Session, rtype: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "update", rtype)
    resource = _resource_body(req, rtype)
    query = "&".join(f"{k}={v}" for k, v in req.params)
    if not req.params:
        raise bad_request(f"PUT {rtype} needs an id in the URL or search criteria (PUT {rtype}?identifier=...)")
    ids = session.services.search.find_ids(session, rtype, req.params)
    if len(ids) > 1:
        raise precondition_failed(f"Conditional update {query!r} matched {len(ids)} {rtype} resources; "
                                  "it must match at most one")
    if len(ids) == 1:
        rid = ids[0]
        _hidden_match(session, rtype, rid, "Conditional update")
        if resource.get("id") not in (None, rid):
            raise bad_request(f"The body's id {resource.get('id')!r} does not match the resource found ({rid!r})")
        resource["id"] = rid
        return _do_update(req, session, rtype, rid, resource, req.if_match())
    rid = resource.get("id")
    if rid is not None:
        if not is_valid_id(str(rid)):
            raise bad_request(f"{rid!r} is not a valid FHIR id")
        return _do_update(req, session, rtype, rid, resource, req.if_match())
    session.guard.check_resource(session.ctx, "create", rtype, resource)
    stored = _create(session, rtype, resource, req.assigned_id)
    return write_response(req, stored, 201, session.base, f"Created {rtype}/{stored.res_id}")


PATCH_MEDIA = "application/json-patch+json"


def patch(req: FhirRequest, session: Session, rtype: str, rid: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "patch", rtype)
    _check_id(rtype, rid)
    if req.content_type != PATCH_MEDIA:
        raise OperationOutcomeError(
            415, "not-supported",
            f"PATCH takes JSON Patch ({PATCH_MEDIA}); {req.content_type or 'no content type'} is not supported")
    ops = req.json_body()
    if not isinstance(ops, list):
        raise bad_request("A JSON Patch document must be a JSON array of operations", code="structure")
    current = visible(session, "patch", session.store.read(session.conn, rtype, rid))
    if_match = req.if_match()
    if if_match is not None and if_match != current.version:
        raise precondition_failed(f"{rtype}/{rid} is at version {current.version}, not {if_match} (If-Match)")
    before = current.json()
    session.guard.check_resource(session.ctx, "update", rtype, before)
    try:
        after = jsonpatch.JsonPatch(ops).apply(before)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise OperationOutcomeError(422, "processing", f"JSON Patch test failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError, KeyError) as exc:
        raise OperationOutcomeError(422, "processing", f"The JSON Patch cannot be applied: {exc}") from None
    if not isinstance(after, dict) or after.get("resourceType") != rtype or after.get("id") != rid:
        raise OperationOutcomeError(422, "processing", "A patch may not change the resourceType or id")
    meta = after.get("meta") if isinstance(after.get("meta"), dict) else None
    if meta is not None:
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if not meta:
            after.pop("meta")
    validate_resource(after, expected_type=rtype)
    return _do_update(req, session, rtype, rid, after, current.version, method="PATCH")


def delete(req: FhirRequest, session: Session, rtype: str, rid: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "delete", rtype)
    _check_id(rtype, rid)
    current = session.store.current(session.conn, rtype, rid)
    if current is not None and current.content is not None:
        visible(session, "delete", current)
        session.guard.check_resource(session.ctx, "delete", rtype, current.json())
    stored = session.store.delete(session.conn, rtype, rid, if_match=req.if_match())
    headers = {"ETag": stored.etag} if stored else {}
    return FhirResponse(204, None, headers)


def conditional_delete(req: FhirRequest, session: Session, rtype: str) -> FhirResponse:
    session.guard.check_type(session.ctx, "delete", rtype)
    if not req.params:
        raise bad_request(f"DELETE {rtype} needs an id or search criteria")
    ids = session.services.search.find_ids(session, rtype, req.params)
    if len(ids) > 1:
        raise precondition_failed(f"Conditional delete matched {len(ids)} {rtype} resources; "
                                  "it must match at most one")
    if ids:
        _hidden_match(session, rtype, ids[0], "Conditional delete")
        return delete(req, session, rtype, ids[0])
    return FhirResponse(204, None, {})


def parse_json_text(text: bytes) -> Any:
    return orjson.loads(text)
