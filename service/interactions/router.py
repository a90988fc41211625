"""The FHIR route table: one generic dispatcher over /{type}/{id}/... (https://hl7.org/fhir/R4/http.html).

`route(req, operations)` returns the handler call and whether it writes, so the pipeline can open the right
kind of unit of work before any storage access. A handler is called with the request's Repository.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.fhir.outcome import OperationOutcomeError, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.types import RESOURCE_TYPES
from service.interactions import bundle, capability, crud, history, patch
from service.operations import Operations
from service.repository import Repository

Call = Callable[[Repository], FhirResponse]

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Route:
    call: Call
    writes: bool
    interaction: str
    creates: str | None = None  # a plain create's type (its write may be sent with its audit row: pipeline)


def _method_not_allowed(method: str, what: str, allowed: str) -> OperationOutcomeError:
    return OperationOutcomeError(405, "not-supported", f"{method} is not allowed on {what}; allowed: {allowed}",
                                 headers={"Allow": allowed})


def _type(rtype: str) -> str:
    if rtype not in RESOURCE_TYPES:
        raise not_found(f"Unknown resource type {rtype!r}")
    return rtype


def _search(req: FhirRequest, rtype: str | None) -> Call:
    return lambda repo: repo.search(req, rtype)


def _operation(req: FhirRequest, ops: Operations, level: str, rtype: str, rid: str | None, name: str) -> Route:
    op = ops.find(level, rtype, name)
    if op is None:
        where = {"system": "the server", "type": rtype, "instance": f"{rtype} instances"}[level]
        raise not_found(f"Operation ${name} is not supported on {where}")
    if req.method not in op.methods:
        raise _method_not_allowed(req.method, f"${name}", ", ".join(op.methods))
    return Route(lambda s: op.handler(req, s, rtype or None, rid), op.writes and req.method != "GET",
                 f"operation:{name}")


APPEND_ONLY = frozenset({"AuditEvent"})


def allowed(req: FhirRequest, r: Route) -> Route:
    """`r`, unless it is what the server never does: 405 for changing the append-only audit trail."""
    if r.interaction in ("update", "patch", "delete") and req.path.split("/", 1)[0] in APPEND_ONLY:
        raise _method_not_allowed(req.method, f"{req.path} (AuditEvents are append-only: read, search and history "
                                  "remain available)", "GET, POST")
    return r


def point_read(method: str, path: str) -> bool:
    """Whether a request is a read or vread by id (`GET Type/id`, `GET Type/id/_history/vid`): one resource by its
    key, whose cost does not depend on what the caller asked for."""
    if method != "GET":
        return False
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history"):
        return not any(p[0] in "_$" for i, p in enumerate(parts) if i != 2) and parts[0] != "metadata"
    return False


SMALL_PAGE = 100  # (the default page is 20: service/search/run.py)
_EXPANDING = ("_include", "_revinclude", "_has")


def small_search(method: str, path: str, params: list[tuple[str, str]]) -> bool:
    """Whether a request is a type search for one page of at most SMALL_PAGE resources and nothing else (no
    `_include`, `_revinclude`, `_has` or chained parameter): its work in Python is bounded by the page, its work in
    the database by the statement bound of whoever runs it."""
    if method != "GET" or path not in RESOURCE_TYPES:
        return False
    for key, value in params:
        if key.startswith(_EXPANDING) or "." in key:
            return False
        if key == "_count" and not (len(value) <= 3 and value.isascii() and value.isdigit()
                                    and int(value) <= SMALL_PAGE):
            return False
    return True


def route(req: FhirRequest, ops: Operations) -> Route:
    """The handler for a request (see `allowed` for what is refused whatever the caller)."""
    parts = [p for p in req.path.split("/") if p]
    m = req.method
    n = len(parts)
    if n == 0:
        if m == "POST":
            return Route(lambda s: bundle.process(req, s, lambda entry: allowed(entry, route(entry, ops))), True,
                         "transaction")
        if m == "GET":
            return Route(_search(req, None), False, "search-system")
        raise _method_not_allowed(m, "the FHIR base", "GET, POST")
    head = parts[0]
    if n == 1 and head == "metadata":
        if m != "GET":
            raise _method_not_allowed(m, "metadata", "GET")
        return Route(lambda s: capability.capability_response(req, s, lambda probe: allowed(probe, route(probe, ops))),
                     False, "capabilities")
    if n == 1 and head == "_history":
        if m != "GET":
            raise _method_not_allowed(m, "_history", "GET")
        return Route(lambda s: history.history(req, s), False, "history-system")
    if n == 1 and head == "_search":
        if m != "POST":
            raise _method_not_allowed(m, "_search", "POST")
        return Route(_search(req, None), False, "search-system")
    if head.startswith("$"):
        return _operation(req, ops, "system", "", None, head[1:]) if n == 1 else _raise(not_found(f"Unknown path {req.path!r}"))
    rtype = _type(head)
    if n == 1:
        if m == "GET":
            return Route(_search(req, rtype), False, "search-type")
        if m == "POST":
            return Route(lambda s: crud.create(req, s, rtype), True, "create", rtype)
        if m == "PUT":
            return Route(lambda s: crud.conditional_update(req, s, rtype), True, "update")
        if m == "DELETE":
            return Route(lambda s: crud.conditional_delete(req, s, rtype), True, "delete")
        if m == "PATCH":
            return Route(lambda s: patch.conditional_patch(req, s, rtype), True, "patch")
        raise _method_not_allowed(m, rtype, "GET, POST, PUT, PATCH, DELETE")
    second = parts[1]
    if n == 2 and second == "_search":
        if m != "POST":
            raise _method_not_allowed(m, f"{rtype}/_search", "POST")
        return Route(_search(req, rtype), False, "search-type")
    if n == 2 and second == "_history":
        if m != "GET":
            raise _method_not_allowed(m, f"{rtype}/_history", "GET")
        return Route(lambda s: history.history(req, s, rtype), False, "history-type")
    if second.startswith("$"):
        if n != 2:
            raise not_found(f"Unknown path {req.path!r}")
        return _operation(req, ops, "type", rtype, None, second[1:])
    rid = second
    if n == 2:
        if m == "GET":
            if rtype in ("OperationDefinition", "StructureDefinition"):  # the server's own definitions first
                return Route(lambda s: capability.definition_read(req, s, rtype, rid), False, "read")
            return Route(lambda s: crud.read(req, s, rtype, rid), False, "read")
        if m == "PUT":
            return Route(lambda s: crud.update(req, s, rtype, rid), True, "update")
        if m == "PATCH":
            return Route(lambda s: patch.patch(req, s, rtype, rid), True, "patch")
        if m == "DELETE":
            return Route(lambda s: crud.delete(req, s, rtype, rid), True, "delete")
        raise _method_not_allowed(m, f"{rtype}/{rid}", "GET, PUT, PATCH, DELETE")
    third = parts[2]
    if n == 3 and third == "_history":
        if m != "GET":
            raise _method_not_allowed(m, f"{rtype}/{rid}/_history", "GET")
        return Route(lambda s: history.history(req, s, rtype, rid), False, "history-instance")
    if n == 4 and third == "_history":
        vid = parts[3]
        if m != "GET":
            raise _method_not_allowed(m, f"{rtype}/{rid}/_history/{vid}", "GET")
        return Route(lambda s: crud.vread(req, s, rtype, rid, vid), False, "vread")
    if n == 3 and third.startswith("$"):
        return _operation(req, ops, "instance", rtype, rid, third[1:])
    if n == 3:
        ctype = _type(third) if third != "*" else "*"
        if m != "GET":
            raise _method_not_allowed(m, f"{rtype}/{rid}/{third}", "GET")
        return Route(lambda s: s.compartment(req, rtype, rid, ctype), False, "search-compartment")
    raise not_found(f"Unknown path {req.path!r}")


def _raise(err: Exception) -> Route:
    raise err

