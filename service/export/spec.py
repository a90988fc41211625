"""What an `$export` kick-off asks for, checked before any job exists (Bulk Data Access 2.0 parameters).

Supported: `_outputFormat` (application/fhir+ndjson, application/ndjson, ndjson), `_since` (an instant),
`_type` (comma-separated types), `_typeFilter` (`Type?search`, repeated or comma-separated: each a search run
through the same search engine and access filter as any other). Anything else is refused with 400 naming it
(`_until`, `_elements`, `patient`, `includeAssociatedData`, `organizeOutputBy`, `allowPartialManifests`, ...):
an export that silently ignored a restriction would export more than was asked.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from service.fhir.outcome import OperationOutcomeError, bad_request
from service.fhir.types import RESOURCE_TYPES

FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
KNOWN = {"_outputFormat", "_since", "_type", "_typeFilter"}
NOT_SUPPORTED = {"_until", "_elements", "patient", "includeAssociatedData", "organizeOutputBy",
                 "allowPartialManifests"}
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_FILTER_START = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
NO_EXPORT = frozenset({"AuditEvent"})  # the audit trail is not the record (the IG lead has its own reports)
MAX_FILTERS = 50


@dataclass(frozen=True)
class ExportSpec:
    level: str  # system | patient | group
    group_id: str | None = None
    types: tuple[str, ...] | None = None  # asked for with _type (None: every type the level covers)
    since: str | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)  # type -> search query strings (ORed)
    request: str = ""  # the kick-off URL, for the manifest

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> ExportSpec:
        raw = orjson.loads(text)
        raw["types"] = tuple(raw["types"]) if raw.get("types") is not None else None
        return cls(**raw)


def parse(params: list[tuple[str, str]], level: str, group_id: str | None, request: str) -> ExportSpec:
    """The kick-off's parameters, or 400 naming the first problem."""
    types: list[str] | None = None
    since: str | None = None
    filters: dict[str, list[str]] = {}
    nfilters = 0
    for key, value in params:
        if key in NOT_SUPPORTED:
            raise OperationOutcomeError(400, "not-supported", f"$export parameter {key!r} is not supported by this "
                                        "server; supported: _outputFormat, _since, _type, _typeFilter")
        if key not in KNOWN:
            raise bad_request(f"Unknown $export parameter {key!r}; supported: _outputFormat, _since, _type, "
                              "_typeFilter", code="not-supported")
        if key == "_outputFormat":
            if value.strip() not in FORMATS:
                raise OperationOutcomeError(400, "not-supported", f"_outputFormat {value!r} is not supported; this "
                                            "server writes application/fhir+ndjson")
        elif key == "_since":
            if since is not None:
                raise bad_request("_since may be given once")
            if not _INSTANT.match(value.strip()):
                raise bad_request(f"_since must be a FHIR instant such as 2026-01-01T00:00:00Z (with a time zone), "
                                  f"not {value[:80]!r}", code="value")
            since = value.strip()
        elif key == "_type":
            asked = [t.strip() for t in value.split(",") if t.strip()]
            if not asked:
                raise bad_request("_type is empty; give resource types, comma-separated")
            bad = [t for t in asked if t not in RESOURCE_TYPES]
            if bad:
                raise bad_request(f"_type: {', '.join(repr(b[:64]) for b in bad)} is not a FHIR R4 resource type",
                                  code="value")
            types = list(dict.fromkeys((types or []) + asked))
        else:  # _typeFilter
            for one in _FILTER_START.split(value):
                rtype, q, query = one.strip().partition("?")
                if not q or not query.strip():
                    raise bad_request(f"_typeFilter {one[:100]!r} must be a search such as "
                                      "Observation?code=http://loinc.org|8867-4", code="value")
                if rtype not in RESOURCE_TYPES:
                    raise bad_request(f"_typeFilter {one[:100]!r}: {rtype[:64]!r} is not a resource type", code="value")
                for k, _ in parse_qsl(query, keep_blank_values=True):
                    if k.split(":", 1)[0] in ("_count", "_cursor", "_sort", "_include", "_revinclude", "_summary",
                                              "_elements", "_total", "_type", "_format"):
                        raise bad_request(f"_typeFilter {one[:100]!r}: {k!r} is not a search criterion",
                                          code="value")
                filters.setdefault(rtype, []).append(query)
                nfilters += 1
    if nfilters > MAX_FILTERS:
        raise bad_request(f"At most {MAX_FILTERS} _typeFilter searches per export", code="too-costly")
    if types is not None:
        unasked = sorted(set(filters) - set(types))
        if unasked:
            raise bad_request(f"_typeFilter names {', '.join(unasked)}, which _type does not ask for")
        if set(types) & NO_EXPORT:
            raise OperationOutcomeError(400, "not-supported", "AuditEvent is not exported: the audit trail is not the "
                                        "record (information governance leads have their own reports)")
    if set(filters) & NO_EXPORT:
        raise OperationOutcomeError(400, "not-supported", "AuditEvent is not exported")
    return ExportSpec(level=level, group_id=group_id, types=tuple(types) if types is not None else None,
                      since=since, filters=filters, request=request)


def level_types(spec: ExportSpec, patient_types: frozenset[str]) -> list[str]:
    """The types the export covers before the caller's own limits: what `_type` asked, else every type the level
    covers (the whole record at system level; the patient compartment for Patient and Group exports). Patient and
    Group exports asked for a type outside the compartment: 400."""
    covered = set(RESOURCE_TYPES) - NO_EXPORT if spec.level == "system" else (set(patient_types) | {"Patient"}) - NO_EXPORT
    if spec.types is None:
        return sorted(covered)
    outside = [t for t in spec.types if t not in covered]
    if outside:
        raise bad_request(f"A {spec.level}-level export covers the patient compartment; {', '.join(outside)} is not "
                          "patient data (export it at system level, /$export)")
    return list(spec.types)


def search_params(spec: ExportSpec) -> list[tuple[str, str]]:
    """The criteria every search of the export carries (`_since` as `_lastUpdated=ge`)."""
    return [("_lastUpdated", f"ge{spec.since}")] if spec.since else []


def filter_params(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def as_dict(spec: ExportSpec) -> dict[str, Any]:
    return asdict(spec)
