"""The OpenAPI 3.0 description of the whole service: the FHIR API (every type's interactions, search parameters
and $operations) next to FastAPI's own routes (health, identity, pages).

The FHIR part is generated from the same definitions as the CapabilityStatement: `capability.build` (the route
table's answers for each interaction, the search engine's parameters, the operations registry). It is built on
the first request for `/openapi.json` and cached for the process (a few hundred milliseconds, never at start-up).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

FHIR = "application/fhir+json"
ID_PATTERN = r"^[A-Za-z0-9\-\.]{1,64}$"
RESULT = ["_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude", "_format"]
# How each CapabilityStatement interaction is published: (path suffix, method, summary).
INTERACTIONS = {
    "search-type": ("", "get", "Search {t}"),
    "create": ("", "post", "Create a {t}"),
    "read": ("/{id}", "get", "Read a {t}"),
    "update": ("/{id}", "put", "Update a {t}"),
    "patch": ("/{id}", "patch", "Patch a {t} (JSON Patch)"),
    "delete": ("/{id}", "delete", "Delete a {t}"),
    "history-instance": ("/{id}/_history", "get", "History of a {t}"),
    "vread": ("/{id}/_history/{vid}", "get", "A version of a {t}"),
    "history-type": ("/_history", "get", "History of every {t}"),
}
_lock = threading.Lock()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answers(ok: str = "200", schema: str = "Resource") -> dict[str, Any]:
    return {ok: {"description": "Success", "content": {FHIR: {"schema": _ref(schema)}}},
            "default": {"description": "An error, always an OperationOutcome naming the problem",
                        "content": {FHIR: {"schema": _ref("OperationOutcome")}}}}


def _resource_body(rtype: str) -> dict[str, Any]:
    return {"required": True, "content": {FHIR: {"schema": {
        "type": "object", "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [rtype]}}, "additionalProperties": True}}}}


def _param(name: str, where: str = "query", schema: dict[str, Any] | None = None, doc: str = "",
           required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "required": required or where == "path",
                           "schema": schema or {"type": "string"}}
    if doc:
        out["description"] = doc[:300]
    return out


def _search_params(entry: dict[str, Any]) -> list[dict[str, Any]]:
    params = [_param(p["name"], doc=f"{p['type']} search parameter. {p.get('documentation', '')}".strip())
              for p in entry.get("searchParam", [])]
    params.append(_param("_count", schema={"type": "integer", "minimum": 0}, doc="page size (at most 1000)"))
    params += [_param(n) for n in RESULT if n != "_count"]
    return params


PATH_ID = _param("id", "path", {"type": "string", "pattern": ID_PATTERN}, "the resource's logical id")
PATH_VID = _param("vid", "path", {"type": "string", "pattern": r"^[0-9]{1,9}$"}, "the version id")


def fhir_paths(services: Any) -> dict[str, Any]:
    """Paths under /fhir from the CapabilityStatement (and the operations registry it lists)."""
    from service.interactions import capability, router

    statement = capability.build(services, lambda probe: router.allowed(probe, router.route(probe, services.operations)))
    rest = statement["rest"][0]
    paths: dict[str, dict[str, Any]] = {}

    def add(path: str, method: str, op: dict[str, Any]) -> None:
        paths.setdefault(path, {})[method] = op

    for entry in rest["resource"]:
        t = entry["type"]
        codes = {i["code"] for i in entry["interaction"]}
        for code, (suffix, method, summary) in INTERACTIONS.items():
            if code not in codes:
                continue
            op: dict[str, Any] = {"operationId": f"{code}-{t}", "summary": summary.format(t=t), "tags": [t],
                                  "responses": _answers("201" if code == "create" else "200",
                                                        "Bundle" if code.startswith(("search", "history")) else "Resource")}
            params = [PATH_ID] if "{id}" in suffix else []
            if "{vid}" in suffix:
                params.append(PATH_VID)
            if code == "search-type":
                params += _search_params(entry)
            if code in ("history-instance", "history-type"):
                params += [_param("_count", schema={"type": "integer", "minimum": 0}), _param("_since")]
            if code in ("create", "update"):
                op["requestBody"] = _resource_body(t)
            if code == "patch":
                op["requestBody"] = {"required": True, "content": {"application/json-patch+json": {"schema": {
                    "type": "array", "items": {"type": "object", "required": ["op", "path"]}}}}}
            if code == "update":
                params.append(_param("If-Match", "header", doc='the version the change is based on, W/"n"'))
            if params:
                op["parameters"] = params
            add(f"/fhir/{t}{suffix}", method, op)
        if "search-type" in codes:
            add(f"/fhir/{t}/_search", "post", {
                "operationId": f"search-post-{t}", "summary": f"Search {t} (form-encoded parameters)", "tags": [t],
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "properties": {p["name"]: {"type": "string"} for p in entry.get("searchParam", [])}}}}},
                "responses": _answers("200", "Bundle")})
    every_type = [entry["type"] for entry in rest["resource"]]
    for (level, t, name), op in services.operations.items():
        types = [""] if level == "system" else every_type if t == "*" else [t]
        for rtype in types:
            path = {"system": f"/fhir/${name}", "type": f"/fhir/{rtype}/${name}",
                    "instance": f"/fhir/{rtype}/{{id}}/${name}"}[level]
            for m in op.methods:
                spec: dict[str, Any] = {"operationId": f"op-{name}-{level}-{rtype or 'system'}-{m.lower()}",
                                        "summary": f"${name}", "tags": [rtype or "system"], "responses": _answers()}
                if level == "instance":
                    spec["parameters"] = [PATH_ID]
                if m == "POST":
                    spec["requestBody"] = {"required": False, "content": {FHIR: {"schema": _ref("Parameters")}}}
                add(path, m.lower(), spec)
    add("/fhir", "post", {"operationId": "transaction", "summary": "A batch or transaction Bundle", "tags": ["system"],
                          "requestBody": {"required": True, "content": {FHIR: {"schema": _ref("Bundle")}}},
                          "responses": _answers("200", "Bundle")})
    add("/fhir", "get", {"operationId": "search-system", "summary": "Search across types", "tags": ["system"],
                         "parameters": [_param("_type"), *(_param(n) for n in ("_id", "_lastUpdated", "_count"))],
                         "responses": _answers("200", "Bundle")})
    add("/fhir/_history", "get", {"operationId": "history-system", "summary": "History of everything",
                                  "tags": ["system"], "parameters": [_param("_count", schema={"type": "integer",
                                                                                              "minimum": 0}),
                                                                     _param("_since")],
                                  "responses": _answers("200", "Bundle")})
    add("/fhir/metadata", "get", {"operationId": "capabilities", "summary": "The CapabilityStatement",
                                  "tags": ["system"], "security": [], "responses": _answers("200", "Resource")})
    return paths


def _components() -> dict[str, Any]:
    obj = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}},
           "additionalProperties": True}
    return {
        "schemas": {
            "Resource": obj,
            "Bundle": {**obj, "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
                                             "type": {"type": "string"}, "entry": {"type": "array",
                                                                                   "items": {"type": "object"}}}},
            "Parameters": {**obj, "properties": {"resourceType": {"type": "string", "enum": ["Parameters"]},
                                                 "parameter": {"type": "array", "items": {"type": "object"}}}},
            "OperationOutcome": {**obj, "required": ["resourceType", "issue"],
                                 "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                                                "issue": {"type": "array", "minItems": 1, "items": {"type": "object"}}}},
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                       "description": "An access token from /auth/token (SMART on FHIR scopes)"}},
    }


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                         description="FHIR R4 (4.0.1) shared care record. Every FHIR error is an OperationOutcome.")
    fhir = fhir_paths(app.state.services)
    for path, ops in fhir.items():
        for spec in ops.values():
            spec.setdefault("security", [{"bearer": []}])
        schema.setdefault("paths", {})[path] = {**schema.get("paths", {}).get(path, {}), **ops}
    comps = schema.setdefault("components", {})
    for k, v in _components().items():
        comps.setdefault(k, {}).update(v)
    return schema


def install(app: FastAPI) -> None:
    """Serve the generated description at the app's openapi_url: built on first use, then cached."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with _lock:
                if app.openapi_schema is None:
                    app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
