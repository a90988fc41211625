"""The CapabilityStatement, generated from what is registered: types, interactions, search, operations.

Built from the services: the route table, the operations registry, the search engine's parameters and the
identity layer's SMART `oauth-uris` extension. It only tells the truth: every operation's `definition` links to
`[base]/OperationDefinition/[id]`, served here (`definition_read`, service/fhir/conformance.py), and the
StructureDefinition entry lists the extensions the server adds, each served at `[base]/StructureDefinition/[id]`
with its canonical `url`.
"""

from __future__ import annotations

from typing import Any

import orjson

from service.fhir import conformance
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.types import NOT_STORABLE, RESOURCE_TYPES
from service.repository import Repository
from service.wiring import Services

TYPE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type"]
SYSTEM_INTERACTIONS = ["transaction", "batch", "history-system", "search-system"]

# How the router answers each type interaction: (method, path template, the router's interaction name).
PROBES = {
    "read": ("GET", "{t}/x"), "vread": ("GET", "{t}/x/_history/1"), "update": ("PUT", "{t}/x"),
    "patch": ("PATCH", "{t}/x"), "delete": ("DELETE", "{t}/x"), "history-instance": ("GET", "{t}/x/_history"),
    "history-type": ("GET", "{t}/_history"), "create": ("POST", "{t}"), "search-type": ("GET", "{t}"),
}
CONDITIONAL_PROBES = {"conditional-update": ("PUT", "{t}", "update"), "conditional-delete": ("DELETE", "{t}", "delete")}


def _refused(route: Any, method: str, path: str) -> bool:
    """Whether the route table refuses this interaction outright (405) before any storage access."""
    try:
        route(FhirRequest(method=method, path=path))
    except OperationOutcomeError as err:
        return err.status == 405
    return False


def build(services: Services, route: Any) -> dict[str, Any]:
    search = services.search
    resources = []
    for rtype in sorted(RESOURCE_TYPES - NOT_STORABLE):
        codes = [c for c in TYPE_INTERACTIONS
                 if not _refused(route, PROBES[c][0], PROBES[c][1].format(t=rtype))]
        cond = {k: not _refused(route, m, p.format(t=rtype)) for k, (m, p, _i) in CONDITIONAL_PROBES.items()}
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": c} for c in codes],
            "versioning": "versioned-update" if "update" in codes else "versioned",
            "readHistory": "vread" in codes,
            "updateCreate": False,  # update-as-create is for administrators and data migration only
            "conditionalCreate": "create" in codes,
            "conditionalUpdate": cond["conditional-update"],
            "conditionalDelete": "single" if cond["conditional-delete"] else "not-supported",
        }
        if search is not None:
            params = search.capability_params(rtype)
            if params:
                entry["searchParam"] = params
            includes = search.capability_includes(rtype)
            if includes:
                entry["searchInclude"], entry["searchRevInclude"] = includes
        ops, seen = [], set()
        for (_level, t, name), op in services.operations.items():
            link = conformance.operation_link(op, services.base)
            if t in (rtype, "*") and (name, link) not in seen:
                seen.add((name, link))
                ops.append({"name": name, "definition": link})
        if ops:
            entry["operation"] = ops
        if rtype == "StructureDefinition":
            entry["documentation"] = (
                "Extensions this server adds to resources, each defined at: " + ", ".join(
                    conformance.extension_link(e.id, services.base) for e in conformance.EXTENSIONS))
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
    }
    sys_ops = [{"name": op.name, "definition": conformance.operation_link(op, services.base)}
               for (level, _t, _), op in services.operations.items() if level == "system"]
    if sys_ops:
        rest["operation"] = sys_ops
    from service.auth import capability_security

    rest["security"] = capability_security(services)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "Shared care record service",
        "kind": "instance",
        "software": {"name": "sharedcare", "version": "0.1.0"},
        "implementation": {"description": "Shared-care record and single-assessment service",
                           "url": services.base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json",
                        "application/fhir+json"],  # (the last: FHIRPath Patch, service/interactions/patch.py)
        "rest": [rest],
    }


_cache: dict[int, bytes] = {}


def capability_response(req: FhirRequest, repo: Repository, route: Any) -> FhirResponse:
    key = id(repo.services)
    body = _cache.get(key)
    if body is None:
        body = orjson.dumps(build(repo.services, route))
        _cache[key] = body
    return FhirResponse(200, body)




def definition_read(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    """GET OperationDefinition/[id] and StructureDefinition/[id]: the server's own definitions (generated,
    read-only), else what is stored."""
    if rtype == "OperationDefinition":
        served = conformance.operation_definitions(repo.services.operations, repo.base).get(rid)
    else:
        served = conformance.structure_definitions().get(rid)
    if served is not None:
        return FhirResponse(200, served)
    from service.interactions import crud

    return crud.read(req, repo, rtype, rid)
