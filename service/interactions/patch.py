"""PATCH, instance and conditional (https://hl7.org/fhir/R4/http.html#patch), in three formats:

- JSON Patch (RFC 6902): `application/json-patch+json`, a JSON array of operations;
- JSON merge patch (RFC 7386): `application/merge-patch+json`, or a JSON object other than a Parameters sent as
  `application/json` / `application/fhir+json` (what fhirpy's `resource.patch()` sends); `null` removes;
- FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a `Parameters` resource as `application/fhir+json`
  (or `application/json`), operations add, insert, delete, replace and move.

A malformed patch document is 400; one that cannot be applied to the resource (a path that matches nothing or
too much, an index out of range, a change of resourceType or id) is 422; the result is validated like any
write. The repository decides access: a resource the caller may not see answers exactly as a missing one.
`PATCH [type]?criteria` patches the one match the caller may see (404 none, 412 several).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.fhir.outcome import OperationOutcomeError, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.interactions.crud import json_patch
from service.repository import Repository

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
FHIR_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
FORMATS = (JSON_PATCH, MERGE_PATCH, "application/fhir+json (FHIRPath Patch: a Parameters resource)")

Apply = Callable[[dict[str, Any]], dict[str, Any]]


def patch(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    repo.require("patch", rtype)
    apply = patcher(req)
    stored = repo.patch(rtype, rid, apply, if_match=req.if_match())
    return write_response(req, stored, 200, repo.base, f"Updated {rtype}/{rid}")


def conditional_patch(req: FhirRequest, repo: Repository, rtype: str) -> FhirResponse:
    """PATCH [type]?criteria: the one match the caller may see (what they may not see never matches)."""
    repo.require("patch", rtype)
    if not req.params:
        raise bad_request(f"PATCH {rtype} needs an id in the URL or search criteria (PATCH {rtype}?identifier=...)")
    apply = patcher(req)
    rid = repo.match_for_write(rtype, req.params, "Conditional patch")
    if rid is None:
        query = "&".join(f"{k}={v}" for k, v in req.params)
        raise OperationOutcomeError(404, "not-found", f"Conditional patch {query!r} matched no {rtype}")
    stored = repo.patch(rtype, rid, apply, if_match=req.if_match())
    return write_response(req, stored, 200, repo.base, f"Updated {rtype}/{rid}")


def patcher(req: FhirRequest) -> Apply:
    """`apply(current) -> next` for the request's patch document, by its media type (415 for any other)."""
    ctype = req.content_type
    if ctype == JSON_PATCH:
        return json_patch(req.json_body())  # type: ignore[no-any-return]
    if ctype == MERGE_PATCH:
        return merge_patch(req.json_body())
    if ctype in FHIR_TYPES:
        body = req.json_body()
        if isinstance(body, list):
            raise OperationOutcomeError(415, "not-supported", f"A JSON Patch (a JSON array) is sent as {JSON_PATCH}, "
                                        f"not {ctype}; {ctype} takes a FHIRPath Patch (Parameters) or a merge patch")
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            return fhirpath_patch(body)
        return merge_patch(body)
    raise OperationOutcomeError(415, "not-supported", f"PATCH takes {', '.join(FORMATS)}; "
                                f"{ctype or 'no content type'} is not supported")


# -- JSON merge patch (RFC 7386) ------------------------------------------------------------------------
def merge(target: Any, patch_doc: Any) -> Any:
    if not isinstance(patch_doc, dict):
        return copy.deepcopy(patch_doc)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch_doc.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def merge_patch(doc: Any) -> Apply:
    if not isinstance(doc, dict):
        raise bad_request("A JSON merge patch for a resource must be a JSON object (RFC 7386)", code="structure")

    def apply(before: dict[str, Any]) -> dict[str, Any]:
        return merge(before, doc)  # type: ignore[no-any-return]

    return apply


# -- FHIRPath Patch ---------------------------------------------------------------------------------------
OPERATION_PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}


@dataclass(frozen=True)
class Op:
    n: int  # its position among the operations (1-based), for messages
    type: str
    path: str
    name: str | None = None
    value: Any = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None
    value_type: str | None = None  # the value's type as its value[x] names it ("Quantity"), for choice elements

    def where(self) -> str:
        return f"operation {self.n} ({self.type} at {self.path!r})"


def _value_of(part: dict[str, Any]) -> tuple[bool, Any]:
    """A Parameters part's value: its value[x], or a complex value built from its parts."""
    keys = [k for k in part if k.startswith("value") and len(k) > 5 and k[5].isupper()]
    if len(keys) > 1:
        raise bad_request(f"Parameter part {part.get('name')!r} has more than one value[x] ({', '.join(keys)})")
    if keys:
        return True, part[keys[0]]
    if "resource" in part:
        return True, part["resource"]
    if isinstance(part.get("part"), list):
        out: dict[str, Any] = {}
        for sub in part["part"]:
            if not isinstance(sub, dict) or not isinstance(sub.get("name"), str):
                raise bad_request("Each part of a complex FHIRPath Patch value needs a name (the element's name)")
            found, v = _value_of(sub)
            if not found:
                raise bad_request(f"Part {sub['name']!r} of a FHIRPath Patch value has no value")
            if sub["name"] in out:
                prev = out[sub["name"]]
                out[sub["name"]] = [*prev, v] if isinstance(prev, list) else [prev, v]
            else:
                out[sub["name"]] = v
        return True, out
    return False, None


def _integer(op_type: str, n: int, name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise bad_request(f"FHIRPath Patch operation {n} ({op_type}): {name} must be a non-negative valueInteger, "
                          f"not {raw!r}")
    return raw


def parse_operations(body: dict[str, Any]) -> list[Op]:
    params = body.get("parameter")
    if not isinstance(params, list) or not params:
        raise bad_request("A FHIRPath Patch is a Parameters resource with one or more 'operation' parameters",
                          code="structure")
    ops = []
    for n, p in enumerate(params, 1):
        if not isinstance(p, dict) or p.get("name") != "operation":
            got = p.get("name") if isinstance(p, dict) else p
            raise bad_request(f"FHIRPath Patch parameter {n} must be named 'operation', not {got!r}")
        parts: dict[str, Any] = {}
        for part in p.get("part") or []:
            name = part.get("name") if isinstance(part, dict) else None
            if name not in ("type", "path", "name", "value", "index", "source", "destination"):
                raise bad_request(f"FHIRPath Patch operation {n} has an unknown part {name!r} (known: type, path, "
                                  "name, value, index, source, destination)")
            if name in parts:
                raise bad_request(f"FHIRPath Patch operation {n} has more than one {name!r} part")
            if name == "value":
                found, value = _value_of(part)
                if not found:
                    raise bad_request(f"FHIRPath Patch operation {n}: the value part has no value")
                parts[name] = value
                parts["value_type"] = next((k[5:] for k in part if k.startswith("value") and len(k) > 5
                                            and k[5].isupper()), None)
            else:
                found, value = _value_of(part)
                parts[name] = value if found else None
        op_type = parts.get("type")
        if op_type not in OPERATION_PARTS:
            raise bad_request(f"FHIRPath Patch operation {n}: type must be one of {', '.join(OPERATION_PARTS)}, "
                              f"not {op_type!r}")
        for needed in OPERATION_PARTS[op_type]:
            if parts.get(needed) is None:
                raise bad_request(f"FHIRPath Patch operation {n} ({op_type}) needs a {needed!r} part",
                                  code="required")
        if not isinstance(parts["path"], str) or not parts["path"].strip():
            raise bad_request(f"FHIRPath Patch operation {n}: path must be a FHIRPath expression (valueString)")
        if op_type == "add" and not (isinstance(parts["name"], str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*",
                                                                                      parts["name"])):
            raise bad_request(f"FHIRPath Patch operation {n} (add): name must be an element name, not "
                              f"{parts['name']!r}")
        index, source, destination = (_integer(op_type, n, k, parts[k]) if parts.get(k) is not None else None
                                      for k in ("index", "source", "destination"))
        ops.append(Op(n, op_type, parts["path"].strip(), parts.get("name"), parts.get("value"), index, source,
                      destination, parts.get("value_type")))
    return ops


def fhirpath_patch(body: dict[str, Any]) -> Apply:
    ops = parse_operations(body)
    for op in ops:
        _compiled(op)  # a path that is not FHIRPath is a bad request, before anything is read

    def apply(before: dict[str, Any]) -> dict[str, Any]:
        resource = copy.deepcopy(before)
        for op in ops:
            _apply(resource, op)
        return resource

    return apply


def _compiled(op: Op) -> Any:
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    try:
        return fp_compile(op.path, model=models["r4"], options={"returnRawData": True})
    except Exception as exc:  # noqa: BLE001  (the parser's errors are of many kinds)
        raise bad_request(f"FHIRPath Patch {op.where()}: the path is not a valid FHIRPath expression "
                          f"({type(exc).__name__})") from None


@dataclass
class Loc:
    """Where a node lives: `container[key]`, or `container[key][index]` in a list."""

    container: dict[str, Any]
    key: str
    index: int | None
    choice: str | None = None  # a choice element's name without its type (value for valueQuantity)

    def get(self) -> Any:
        value = self.container[self.key]
        return value[self.index] if self.index is not None else value


_STEP = re.compile(r"([^.\[\]]+)(?:\[(\d+)\])?")


def _locate(resource: dict[str, Any], op: Op, path: str | None = None) -> list[Loc | None]:
    """The nodes `path` selects, as locations in `resource` (None for the resource itself)."""
    fn = _compiled(op) if path is None else _compiled(Op(op.n, op.type, path))
    try:
        nodes = fn(resource, {})
    except OperationOutcomeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise bad_request(f"FHIRPath Patch {op.where()}: the path is not a FHIRPath expression this server can "
                          f"evaluate ({exc})") from None
    out: list[Loc | None] = []
    for node in nodes:
        prop = getattr(node, "propName", None)
        if prop is None:
            if getattr(node, "data", None) is resource:
                out.append(None)
                continue
            raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path selects a value "
                                        "that is not an element of the resource")
        out.append(_walk(resource, prop, op))
    return out


def _walk(resource: dict[str, Any], prop: str, op: Op) -> Loc:
    steps = _STEP.findall(prop)[1:]  # (the first step is the resource type)
    node: Any = resource
    loc: Loc | None = None
    for key, index in steps:
        if not isinstance(node, dict):
            break
        choice = None
        if key not in node:  # a choice element named without its type (value -> valueQuantity)
            choice = key
            key = next((k for k in node if k.startswith(key) and len(k) > len(key) and k[len(key)].isupper()), key)
        if key not in node:
            break
        idx = int(index) if index else None
        loc = Loc(node, key, idx if isinstance(node[key], list) else None, choice)
        node = loc.get()
    else:
        if loc is not None:
            return loc
    raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the element it selects "
                                f"({prop}) cannot be changed")


def _one(resource: dict[str, Any], op: Op, *, optional: bool = False) -> Loc | None:
    locs = _locate(resource, op)
    if not locs:
        if optional:
            return None
        raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path matches no element")
    if len(locs) > 1:
        raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path matches "
                                    f"{len(locs)} elements; it must match exactly one")
    if locs[0] is None and op.type != "add":
        raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the resource itself cannot "
                                    f"be the target of {op.type}")
    return locs[0]


def _list_at(resource: dict[str, Any], op: Op) -> tuple[dict[str, Any], str]:
    """The container and key of the list `op.path` names (insert, move): from its items, or when it is empty
    from the element that would hold it."""
    locs = _locate(resource, op)
    if locs:
        first = locs[0]
        if first is None or any(loc is None or loc.container is not first.container or loc.key != first.key
                                for loc in locs) or not isinstance(first.container[first.key], list):
            raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path must select "
                                        "the items of one list")
        return first.container, first.key
    m = re.fullmatch(r"(.+)\.([A-Za-z][A-Za-z0-9]*)", op.path)
    if m is None:
        raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path matches no list")
    parents = _locate(resource, op, m.group(1))
    if len(parents) != 1:
        raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path matches no list")
    parent = resource if parents[0] is None else parents[0].get()
    if not isinstance(parent, dict):
        raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: the path matches no list")
    return parent, m.group(2)


def _apply(resource: dict[str, Any], op: Op) -> None:
    if op.type == "add":
        loc = _one(resource, op)
        target = resource if loc is None else loc.get()
        if not isinstance(target, dict):
            raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: elements can only be "
                                        "added to a complex element")
        assert op.name is not None
        model = _model_at(resource, loc)
        name = op.name
        if model is not None and _field(model, name) is None and op.value_type and _field(model, name + op.value_type):
            name = name + op.value_type  # a choice element (value -> valueQuantity)
        field = _field(model, name)
        repeats = isinstance(target.get(name), list) or _repeats(field)
        value = _shape(op.value, _field_model(field))
        taken = name in target or (name != op.name and any(
            k.startswith(op.name) and k[len(op.name):][:1].isupper() for k in target))
        if repeats:
            target[name] = [*(target.get(name) or []), value]
        elif taken:
            raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: {op.name} already has a "
                                        "value and does not repeat; use replace")
        else:
            target[name] = value
    elif op.type == "insert":
        container, key = _list_at(resource, op)
        items = list(container.get(key) or [])
        assert op.index is not None
        if op.index > len(items):
            raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: index {op.index} is past "
                                        f"the end of the list ({len(items)} items)")
        items.insert(op.index, _shape(op.value, _field_model(_field(_model_of(resource, container), key))))
        container[key] = items
    elif op.type == "delete":
        loc = _one(resource, op, optional=True)
        if loc is None:
            return
        if loc.index is not None:
            del loc.container[loc.key][loc.index]
            if not loc.container[loc.key]:
                del loc.container[loc.key]
        else:
            del loc.container[loc.key]
    elif op.type == "replace":
        loc = _one(resource, op)
        assert loc is not None
        key = loc.key
        if loc.choice and op.value_type and key != loc.choice + op.value_type:  # valueQuantity -> valueString
            key = loc.choice + op.value_type
            loc.container[key] = loc.container.pop(loc.key)
        value = _shape(op.value, _field_model(_field(_model_of(resource, loc.container), key)))
        if loc.index is not None:
            loc.container[key][loc.index] = value
        else:
            loc.container[key] = value
    elif op.type == "move":
        container, key = _list_at(resource, op)
        items = list(container.get(key) or [])
        assert op.source is not None and op.destination is not None
        if op.source >= len(items) or op.destination >= len(items):
            raise OperationOutcomeError(422, "processing", f"FHIRPath Patch {op.where()}: source {op.source} and "
                                        f"destination {op.destination} must be below {len(items)} (the list's size)")
        items.insert(op.destination, items.pop(op.source))
        container[key] = items


def _field(model: Any, name: str) -> Any:
    """The base specification's definition of element `name` of `model` (fhir.resources R4B), or None."""
    if model is None:
        return None
    fields = model.model_fields
    return fields.get(name) or next((f for f in fields.values() if f.alias == name), None)


def _repeats(field: Any) -> bool:
    """Whether an element repeats (0..*)."""
    return field is not None and "List[" in str(field.annotation)


def _field_model(field: Any) -> Any:
    if field is None:
        return None
    m = re.search(r"abc\.(\w+)Type", str(field.annotation))
    if m is None or m.group(1) in ("Resource", "FHIRPrimitiveExtension"):
        return None
    try:
        from fhir.resources.R4B import get_fhir_model_class

        return get_fhir_model_class(m.group(1))
    except Exception:  # noqa: BLE001
        return None


def _shape(value: Any, model: Any) -> Any:
    """A complex value built from parts, with its repeating elements as lists (one part gives one item)."""
    if model is None or not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        field = _field(model, key)
        sub = _field_model(field)
        if _repeats(field):
            out[key] = [_shape(x, sub) for x in (v if isinstance(v, list) else [v])]
        else:
            out[key] = _shape(v, sub)
    return out


def _model_of(resource: dict[str, Any], node: dict[str, Any]) -> Any:
    """The model of a complex node of `resource`."""
    if node is resource:
        return _model_at(resource, None)
    path = _path_to(resource, node)
    return None if path is None else _model_along(resource, path)


def _model_at(resource: dict[str, Any], loc: Loc | None) -> Any:
    if loc is None:
        return _model_along(resource, ())
    target = loc.get()
    path = _path_to(resource, target) if isinstance(target, (dict, list)) else None
    return None if path is None else _model_along(resource, path)


def _model_along(resource: dict[str, Any], path: tuple[Any, ...]) -> Any:
    try:
        from fhir.resources.R4B import get_fhir_model_class

        model = get_fhir_model_class(str(resource.get("resourceType")))
    except Exception:  # noqa: BLE001  (a type R4B does not have: cardinality as the data shows it)
        return None
    for key in path:
        if isinstance(key, int):
            continue
        model = _field_model(_field(model, key))
        if model is None:
            return None
    return model


def _path_to(node: Any, target: Any, trail: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    if node is target:
        return trail
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for k, v in items:
        if isinstance(v, (dict, list)):
            found = _path_to(v, target, (*trail, k))
            if found is not None:
                return found
    return None
