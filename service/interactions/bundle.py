"""Batch and transaction Bundles POSTed to the base (https://hl7.org/fhir/R4/http.html#transaction).

Every entry becomes a `FhirRequest` run by the router's own handlers on the same repo and
connection, so validation, the access guard and storage are exactly those of a single request.

Transaction (all or nothing; the pipeline runs it in one write unit of work):
1. DELETEs run first; then every POST/PUT/PATCH target is planned: ids for creates are assigned,
   `ifNoneExist` and conditional PUT/PATCH URLs are resolved (after the deletes, before any write).
2. POSTs, then PUT/PATCHes, then GETs run in that order (entries keep their Bundle order within a
   group). Before an entry runs, every string equal to a fullUrl becomes the planned `Type/id`, and
   conditional references (`Patient?identifier=s|v`) resolve to the one match (else 412).
3. Any failing entry raises an OperationOutcomeError naming the entry, so everything rolls back.

Batch: entries run in Bundle order, each in its own SAVEPOINT, so a failing entry leaves nothing
behind and does not affect the others; each gets its own status (and outcome) in the batch-response.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson

from service.fhir.decimals import dumps
from service.fhir.outcome import (
    Issue,
    OperationOutcomeError,
    bad_request,
    information,
    not_found,
    precondition_failed,
)
from service.fhir.request import FhirRequest, FhirResponse, error_response
from service.fhir.types import RESOURCE_TYPES, is_valid_id
from service.interactions import references
from service.repository import Repository

METHODS = ("DELETE", "POST", "PUT", "PATCH", "GET", "HEAD")
PHASE = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
PATCH_MEDIA = "application/json-patch+json"
MERGE_PATCH_MEDIA = "application/merge-patch+json"
# Outer request headers that belong to the Bundle itself, not to its entries.
OWN_HEADERS = {"content-type", "content-length", "if-match", "if-none-match", "if-none-exist",
               "if-modified-since", "prefer", "accept"}


@dataclass
class Entry:
    index: int
    method: str
    url: str  # as written in entry.request.url
    path: str  # relative to the base, without the query
    params: list[tuple[str, str]]
    request: dict[str, Any]
    resource: dict[str, Any] | None
    full_url: str | None
    target: str | None = None  # planned "Type/id" for POST/PUT/PATCH in a transaction
    assigned_id: str | None = None  # id a create must use
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"Bundle.entry[{self.index}] ({self.method} {self.url})"


def process(req: FhirRequest, repo: Repository, route: Any) -> FhirResponse:
    """`route(entry request) -> Route`: the router's own table, for every entry."""
    bundle = req.json_body()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise bad_request(f"POST to the FHIR base takes a Bundle of type transaction or batch, not {got!r}")
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise bad_request(f"A Bundle of type {btype!r} cannot be processed at the base; POST a transaction or "
                          "batch Bundle (other Bundles are stored with POST /Bundle)", code="value")
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise bad_request("Bundle.entry must be a list", code="structure")
    prefer = req.prefer.get("return", "representation").lower()
    base_headers = {k: v for k, v in req.headers.items() if k not in OWN_HEADERS}
    repo.in_bundle = True
    try:
        if btype == "transaction":
            results = _transaction(repo, raw, base_headers, route)
        else:
            results = _batch(repo, raw, base_headers, route)
    finally:
        repo.in_bundle = False
    out_entries = [_response_entry(repo, entry, resp, prefer) for entry, resp in results]
    body = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": f"{btype}-response",
            "entry": out_entries}
    return FhirResponse(200, orjson.dumps(body))


# -- parsing ----------------------------------------------------------------------------------------
def _parse(index: int, raw: Any, base: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be an object", code="structure")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise bad_request(f"{where}.request is missing: every entry of a transaction or batch needs "
                          "request.method and request.url", code="required")
    method = request.get("method")
    url = request.get("url")
    if method not in METHODS:
        raise bad_request(f"{where}.request.method {method!r} is not one of {', '.join(METHODS)}", code="value")
    if not isinstance(url, str) or not url.strip():
        raise bad_request(f"{where}.request.url is missing", code="required")
    rel = url.strip()
    if rel.startswith(base + "/"):
        rel = rel[len(base) + 1:]
    elif "://" in rel.split("?", 1)[0]:
        raise bad_request(f"{where}.request.url {url!r} is not on this server (base {base})", code="value")
    rel = rel.lstrip("/")
    path, _, query = rel.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise bad_request(f"{where}.resource must be a JSON object", code="structure")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise bad_request(f"{where} ({method} {url}) has no resource", code="required")
    if method != "GET" and method != "HEAD" and path == "":
        raise bad_request(f"{where}.request.url {url!r} must name a resource type (Bundles do not nest)",
                          code="value")
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise bad_request(f"{where}.fullUrl must be a string", code="structure")
    return Entry(index, "GET" if method == "HEAD" else method, url, path, params, request, resource, full_url)


def _parts(entry: Entry) -> list[str]:
    return [p for p in entry.path.split("/") if p]


def _fail(entry: Entry, err: OperationOutcomeError) -> OperationOutcomeError:
    """The entry's error, with every issue naming the entry (the transaction's whole answer)."""
    issues = [Issue(i.severity, i.code, f"{entry.label}: {i.diagnostics}", i.expression) for i in err.issues]
    return OperationOutcomeError(err.status, "", "", issues=issues)


def _condition(rtype: str, text: str) -> str:
    """ifNoneExist is a query string; tolerate the common `Type?query` spelling."""
    text = text.strip()
    if text.startswith(rtype + "?"):
        return text[len(rtype) + 1:]
    return text.lstrip("?")


# -- transaction ------------------------------------------------------------------------------------
def _transaction(repo: Repository, raw: list[Any], base_headers: dict[str, str], route: Any
                 ) -> list[tuple[Entry, FhirResponse]]:
    entries: list[Entry] = []
    for i, e in enumerate(raw):
        entries.append(_parse(i, e, repo.base))
    seen: dict[str, int] = {}
    for e in entries:
        if e.full_url:
            if e.full_url in seen:
                raise bad_request(f"Bundle.entry[{e.index}].fullUrl {e.full_url!r} is also the fullUrl of "
                                  f"Bundle.entry[{seen[e.full_url]}]; fullUrls must be unique", code="invalid")
            seen[e.full_url] = e.index
    order = sorted(entries, key=lambda x: (PHASE[x.method], x.index))
    results: dict[int, FhirResponse] = {}
    for e in order:
        if e.method == "DELETE":
            results[e.index] = _run(repo, e, base_headers, {}, route, transaction=True)
    mapping = _plan(repo, entries)
    repo.defer_references()  # references among the entries resolve once all are written (in any order)
    for e in order:
        if e.method != "DELETE":
            results[e.index] = _run(repo, e, base_headers, mapping, route, transaction=True)
    repo.check_deferred_references()
    return [(e, results[e.index]) for e in entries]


def _plan(repo: Repository, entries: list[Entry]) -> dict[str, str]:
    """Assign every write's target before anything is written; returns fullUrl -> "Type/id"."""
    mapping: dict[str, str] = {}
    conditions: dict[tuple[str, str], str] = {}
    touched: dict[str, int] = {}
    for e in entries:
        try:
            parts = _parts(e)
            if e.method == "POST":
                if len(parts) != 1 or parts[0] not in RESOURCE_TYPES or parts[0] == "AuditEvent":
                    continue  # the router answers (unknown type, operations); the audit log numbers AuditEvents
                rtype = parts[0]
                cond = e.request.get("ifNoneExist")
                if isinstance(cond, str) and cond.strip():
                    query = _condition(rtype, cond)
                    e.extra_headers["if-none-exist"] = query
                    key = (rtype, query)
                    if key in conditions:  # the same condition twice: the same resource
                        e.target = conditions[key]
                    else:
                        rid = repo.match_for_write(rtype, query, "ifNoneExist")
                        if rid is not None:
                            e.target = f"{rtype}/{rid}"
                        conditions[key] = e.target or ""
                if not e.target:
                    e.assigned_id = str(uuid.uuid4())
                    e.target = f"{rtype}/{e.assigned_id}"
                    if isinstance(cond, str) and cond.strip():
                        conditions[(rtype, _condition(rtype, cond))] = e.target
            elif e.method in ("PUT", "PATCH"):
                if not parts or parts[0] not in RESOURCE_TYPES:
                    continue
                rtype = parts[0]
                if len(parts) == 1 and e.params:
                    e.target = _resolve_conditional_write(repo, e, rtype)
                    e.path, e.params = e.target, []
                elif len(parts) == 2:
                    e.target = f"{rtype}/{parts[1]}"
            elif e.method == "DELETE" and len(parts) == 2:
                e.target = f"{parts[0]}/{parts[1]}"
            if e.target and e.method != "POST":
                if e.target in touched:
                    raise bad_request(f"{e.target} is also changed by Bundle.entry[{touched[e.target]}]; "
                                      "a transaction may change each resource only once", code="invalid")
                touched[e.target] = e.index
            if e.target and e.full_url and e.method != "DELETE":
                mapping[e.full_url] = e.target
        except OperationOutcomeError as err:
            raise _fail(e, err) from None
    return mapping


def _resolve_conditional_write(repo: Repository, e: Entry, rtype: str) -> str:
    """PUT/PATCH Type?query: the one match the caller may see, or (PUT only) a new resource; the entry becomes
    Type/id."""
    found = repo.match_for_write(rtype, e.params, f"Conditional {e.method.lower()}")
    query = "&".join(f"{k}={v}" for k, v in e.params)
    assert e.resource is not None
    if e.method == "PATCH":
        if found is None:
            raise not_found(f"Conditional patch {query!r} matched no {rtype}")
        return f"{rtype}/{found}"
    body_id = e.resource.get("id")
    if found is not None:
        if body_id not in (None, found):
            raise bad_request(f"The resource's id {body_id!r} does not match the {rtype} found ({found!r})")
        rid = found
    elif body_id is not None:
        if not isinstance(body_id, str) or not is_valid_id(body_id):
            raise bad_request(f"{body_id!r} is not a valid FHIR id")
        rid = body_id
    else:
        rid = str(uuid.uuid4())
    e.resource = {**e.resource, "id": rid}
    return f"{rtype}/{rid}"


# -- batch ------------------------------------------------------------------------------------------
def _batch(repo: Repository, raw: list[Any], base_headers: dict[str, str], route: Any
           ) -> list[tuple[Entry | int, FhirResponse]]:
    results: list[tuple[Entry | int, FhirResponse]] = []
    for i, r in enumerate(raw):
        try:
            e = _parse(i, r, repo.base)
        except OperationOutcomeError as err:
            results.append((i, error_response(err)))
            continue
        try:
            with repo.savepoint():  # a failed entry leaves nothing behind
                parts = _parts(e)
                if e.method == "POST":
                    cond = e.request.get("ifNoneExist")
                    if isinstance(cond, str) and cond.strip() and len(parts) == 1:
                        e.extra_headers["if-none-exist"] = _condition(parts[0], cond)
                elif e.method == "PATCH" and len(parts) == 1 and e.params and parts[0] in RESOURCE_TYPES:
                    e.target = _resolve_conditional_write(repo, e, parts[0])  # conditional patch
                    e.path, e.params = e.target, []
                resp = _run(repo, e, base_headers, {}, route, transaction=False)
        except OperationOutcomeError as err:
            resp = error_response(err)
        results.append((e, resp))
    return results


# -- running one entry ------------------------------------------------------------------------------
def _run(repo: Repository, e: Entry, base_headers: dict[str, str], mapping: dict[str, str], route: Any, *,
         transaction: bool) -> FhirResponse:
    try:
        resolve = repo.resolve_reference
        headers = dict(base_headers)
        for key, header in (("ifMatch", "if-match"), ("ifNoneMatch", "if-none-match"),
                            ("ifModifiedSince", "if-modified-since")):
            value = e.request.get(key)
            if isinstance(value, str) and value:
                headers[header] = value
        headers.update(e.extra_headers)
        headers["prefer"] = "return=representation"
        body: bytes | None = None
        content_type: str | None = None
        if e.method in ("POST", "PUT") and e.resource is not None:
            resource = references.rewrite(e.resource, mapping, resolve)
            body = dumps(resource, like=e.resource)  # (with the client's decimal literals)
            content_type = "application/fhir+json"
        elif e.method == "PATCH":
            body, content_type = _patch_body(e, mapping, resolve)
        freq = FhirRequest(method=e.method, path=e.path, params=list(e.params), headers=headers, body=body,
                           content_type=content_type, assigned_id=e.assigned_id)
        r = route(freq)
        if r.interaction == "transaction":
            raise bad_request("Bundles do not nest: an entry may not POST to the base", code="not-supported")
        resp = r.call(repo)
        if transaction and e.method == "POST" and e.target and resp.status in (200, 201):
            got = _location_target(resp)
            if got is not None and got != e.target:
                # Only an ifNoneExist that matches a resource written earlier in this same transaction
                # (under a different condition) gets here: references were already planned elsewhere.
                raise precondition_failed(
                    f"the entry resolved to {got}, not to {e.target} as planned before the transaction ran "
                    "(an ifNoneExist matching a resource created earlier in this transaction must use the same "
                    "condition as that entry)")
        return resp
    except OperationOutcomeError as err:
        if transaction:
            raise _fail(e, err) from None
        raise


def _patch_body(e: Entry, mapping: dict[str, str], resolve: Any) -> tuple[bytes, str]:
    """R4: a PATCH entry carries a Binary whose data is the JSON Patch (base64; or a JSON merge patch), or a
    Parameters resource: a FHIRPath Patch (service/interactions/patch.py)."""
    res = e.resource or {}
    if res.get("resourceType") == "Parameters":
        return dumps(references.rewrite(res, mapping, resolve), like=res), "application/fhir+json"
    if res.get("resourceType") != "Binary":
        raise bad_request("A PATCH entry's resource must be a Binary holding a JSON Patch "
                          f"({PATCH_MEDIA}, base64 in Binary.data) or a Parameters resource (FHIRPath Patch); got "
                          f"{res.get('resourceType')!r}", code="invalid")
    ctype = (res.get("contentType") or "").split(";", 1)[0].strip().lower()
    if ctype not in (PATCH_MEDIA, MERGE_PATCH_MEDIA):
        raise OperationOutcomeError(415, "not-supported", f"PATCH entries take JSON Patch (Binary.contentType "
                                    f"{PATCH_MEDIA}), a JSON merge patch ({MERGE_PATCH_MEDIA}) or a FHIRPath Patch "
                                    f"(a Parameters resource); {ctype or 'no contentType'} is not supported")
    try:
        raw = base64.b64decode(res.get("data") or "", validate=True)
        ops = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise bad_request("The PATCH entry's Binary.data is not base64-encoded JSON", code="structure") from None
    return orjson.dumps(references.rewrite(ops, mapping, resolve)), ctype


def _location_target(resp: FhirResponse) -> str | None:
    loc = resp.headers.get("Location")
    if not loc:
        return None
    parts = loc.split("/_history/", 1)[0].rsplit("/", 2)
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


# -- the response Bundle ----------------------------------------------------------------------------
def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _response_entry(repo: Repository, entry: Entry | int, resp: FhirResponse, prefer: str) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _status(resp.status)}
    out: dict[str, Any] = {}
    if resp.status >= 400:
        if resp.body:
            response["outcome"] = orjson.Fragment(resp.body)
        out["response"] = response
        return out
    loc = resp.headers.get("Location")
    if loc:
        response["location"] = loc
        out["fullUrl"] = loc.split("/_history/", 1)[0]
    if resp.headers.get("ETag"):
        response["etag"] = resp.headers["ETag"]
    is_read = isinstance(entry, Entry) and entry.method == "GET"
    if resp.body:
        parsed = orjson.loads(resp.body)
        meta = parsed.get("meta") if isinstance(parsed, dict) else None
        if isinstance(meta, dict) and meta.get("lastUpdated") and not is_read:
            response["lastModified"] = meta["lastUpdated"]
        if is_read or prefer == "representation":
            out["resource"] = orjson.Fragment(resp.body)
        elif prefer == "operationoutcome":
            what = loc.split("/_history/", 1)[0] if loc else (entry.url if isinstance(entry, Entry) else "")
            response["outcome"] = information(f"{_status(resp.status)}: {what}")
    elif prefer == "operationoutcome" and isinstance(entry, Entry):
        response["outcome"] = information(f"{_status(resp.status)}: {entry.method} {entry.url}")
    out["response"] = response
    return out
