"""The conformance resources this server serves about itself: an OperationDefinition for every $operation in the
registry and a StructureDefinition for every extension the server adds to resources.

They are generated (never stored), served read-only at `[base]/OperationDefinition/[id]` and
`[base]/StructureDefinition/[id]` (service/interactions/capability.py), and the CapabilityStatement links to
exactly those URLs, so every link in it resolves.
- Standard operations: the official R4 OperationDefinition (service/validation/data/operation_definitions.json,
  built from the official definitions), keeping its canonical `url`; operations defined elsewhere (Bulk Data
  export) and this service's own get a generated definition naming its levels, types and what it does.
- Extensions: EXTENSIONS below, one entry per extension URL in this service's namespace that the server writes
  (service/workflows/codes.py, service/policy/authorship.py, the assessment forms, workflow queries). A test
  greps service/ for extension URLs and checks each is listed here.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

NAMESPACE = "https://sharedcare.example.org/fhir/StructureDefinition/"
OFFICIAL = Path(__file__).resolve().parents[1] / "validation" / "data" / "operation_definitions.json"
HL7_OD = "http://hl7.org/fhir/OperationDefinition/"


@dataclass(frozen=True)
class Extension:
    id: str
    context: tuple[str, ...]  # FHIRPath element contexts
    value: str | None  # the value[x] type, or None for a complex extension
    parts: tuple[tuple[str, str], ...]  # complex: (part url, value type)
    title: str
    canonical: str | None = None  # defined elsewhere (the URL it is known by), else NAMESPACE + id

    @property
    def url(self) -> str:
        return self.canonical or NAMESPACE + self.id


EXTENSIONS: tuple[Extension, ...] = (
    Extension("authoring-organisation", ("Resource",), "Reference", (),
              "The organisation that wrote this version (stamped by the server on every write; earlier authors "
              "are kept)"),
    Extension("answer-author", ("QuestionnaireResponse.item",), None,
              (("author", "Reference"), ("organisation", "Reference"), ("profession", "code"),
               ("recorded", "dateTime"), ("revision", "integer"), ("source", "code"),
               ("sourceReference", "Reference")),
              "Who answered this item of the joint assessment, for which organisation and profession, when, in "
              "which revision, and whether it was entered or pre-filled (server-owned)"),
    Extension("assessment-episode", ("QuestionnaireResponse",), "Reference",
              (), "The EpisodeOfCare the assessment belongs to"),
    Extension("assessment-prefilled-items", ("QuestionnaireResponse",), "integer", (),
              "How many question items were pre-filled when the assessment was started (server-owned)"),
    Extension("assessment-completed", ("QuestionnaireResponse",), "dateTime", (),
              "When the assessment was first completed (kept on amendment; server-owned)"),
    Extension("careplan-review-date", ("CarePlan",), "date", (), "When the plan is next reviewed"),
    Extension("careplan-agreement", ("CarePlan",), None,
              (("agreedBy", "Reference"), ("agreedWith", "Reference"), ("date", "dateTime")),
              "Who recorded the person's agreement to the plan, with whom, and when (server-owned)"),
    Extension("careplan-status-reason", ("CarePlan",), "string", (), "Why the plan last changed status"),
    Extension("awaiting-sections", ("Bundle.entry.search",), "string", (),
              "An assessment section still waiting for an answer (in the results of the workflow queries)"),
    Extension("section-profession", ("Questionnaire.item",), "code", (),
              "The profession that normally completes this section of the assessment form (health | social-care)"),
    Extension("prefill-source", ("Questionnaire.item",), "string", (),
              "Where a question's answer is pre-filled from (a FHIRPath-like source in the record)"),
    # named by the CapabilityStatement itself (SMART App Launch 1.0: the OAuth endpoints), defined by SMART
    Extension("oauth-uris", ("CapabilityStatement.rest.security",), None,
              (("token", "uri"), ("authorize", "uri"), ("register", "uri"), ("manage", "uri"),
               ("introspect", "uri"), ("revoke", "uri")),
              "The OAuth2 endpoints of this server (SMART App Launch)",
              canonical="http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"),
)


def structure_definition(ext: Extension) -> dict[str, Any]:
    url = ext.url
    diff: list[dict[str, Any]] = [{"id": "Extension", "path": "Extension", "short": ext.title,
                                   "definition": ext.title}]
    if ext.value is None:
        for name, vtype in ext.parts:
            diff += [
                {"id": f"Extension.extension:{name}", "path": "Extension.extension", "sliceName": name,
                 "min": 0, "max": "1"},
                {"id": f"Extension.extension:{name}.url", "path": "Extension.extension.url", "fixedUri": name},
                {"id": f"Extension.extension:{name}.value[x]", "path": "Extension.extension.value[x]",
                 "type": [{"code": vtype}]},
            ]
        diff += [{"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
                 {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"}]
    else:
        diff += [{"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
                 {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
                 {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": ext.value}]}]
    return {
        "resourceType": "StructureDefinition", "id": ext.id, "url": url,
        "name": "".join(p.capitalize() for p in ext.id.split("-")), "title": ext.title, "status": "active",
        "fhirVersion": "4.0.1", "kind": "complex-type", "abstract": False,
        "context": [{"type": "element", "expression": c} for c in ext.context],
        "type": "Extension", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint", "differential": {"element": diff},
    }


@cache
def structure_definitions() -> dict[str, bytes]:
    return {e.id: json.dumps(structure_definition(e), separators=(",", ":")).encode() for e in EXTENSIONS}


@cache
def _official() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(OFFICIAL.read_text())
    return loaded


def operation_id(op: Any) -> str:
    """The id under which an operation's OperationDefinition is served (the tail of its canonical URL)."""
    if op.definition:
        return str(op.definition).rstrip("/").rsplit("/", 1)[-1]
    return str(op.name)


def _description(op: Any) -> str:
    module = importlib.import_module(op.handler.__module__)
    doc = (module.__doc__ or "").strip()
    return doc.split("\n\n", 1)[0].replace("\n", " ") if doc else f"The ${op.name} operation of this server"


def operation_definitions(operations: Any, base: str) -> dict[str, bytes]:
    """id -> OperationDefinition (JSON bytes) for every operation in the registry."""
    groups: dict[str, list[Any]] = {}
    for op in dict(operations.items()).values():
        groups.setdefault(operation_id(op), []).append(op)
    out: dict[str, bytes] = {}
    for oid, ops in groups.items():
        official = _official().get(oid)
        if official is not None:
            body = {**official, "id": oid}
        else:
            op = ops[0]
            levels = {o.level for o in ops}
            types = sorted({t for o in ops for t in o.types if t != "*"} |
                           ({"Resource"} if any("*" in o.types for o in ops) else set()))
            body = {
                "resourceType": "OperationDefinition", "id": oid,
                "url": op.definition or f"{base}/OperationDefinition/{oid}",
                "name": "".join(p[:1].upper() + p[1:] for p in oid.replace("_", "-").split("-")),
                "status": "active", "kind": "operation", "description": _description(op),
                "affectsState": any(o.writes for o in ops), "code": op.name,
                "system": "system" in levels, "type": "type" in levels, "instance": "instance" in levels,
            }
            if types:
                body["resource"] = types
        out[oid] = json.dumps(body, separators=(",", ":")).encode()
    return out


def operation_link(op: Any, base: str) -> str:
    return f"{base}/OperationDefinition/{operation_id(op)}"


def extension_link(ext_id: str, base: str) -> str:
    return f"{base}/StructureDefinition/{ext_id}"
