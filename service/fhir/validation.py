"""Validation on write: JSON shape, the base spec and our profile rules.

The base spec is checked in one pass over the JSON against the official R4 (4.0.1) element definitions, with
the spec's invariants (ele-1, ext-1, per-1, dom-2, txt-1, txt-2), primitive formats and required bindings:
service/validation/ (built from the official definitions by service/validation/build_definitions.py). Every
R4 type is covered, the 11 that the fhir.resources R4B models lack too. Then fhir_profiles.rules.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from fhir_profiles.rules import profile_issues
from service.fhir.outcome import Issue, OperationOutcomeError
from service.fhir.types import RESOURCE_TYPES, is_valid_id


@cache
def _model(resource_type: str) -> Any | None:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (ValueError, KeyError, ImportError):
        return None


def _path(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def base_issues(resource: dict[str, Any], references: list[tuple[str, str]] | None = None) -> list[Issue]:
    """Every problem the base specification finds, each with its element path: one pass over the JSON against
    the official R4 element definitions, invariants and required bindings (service.validation.structure).
    The resource id is checked here too (a create ignores a client's id; an update's must be valid)."""
    from service.validation.structure import issues as structure_issues

    rtype = resource.get("resourceType")
    issues: list[Issue] = []
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not is_valid_id(rid)):
        issues.append(Issue("error", "value", f"{rtype}.id: {rid!r} is not a valid FHIR id "
                                              "(1-64 characters of A-Z, a-z, 0-9, '-' and '.')", (f"{rtype}.id",)))
    return issues + [i for i in structure_issues(resource, references) if i.expression != (f"{rtype}.id",)]


def model_issues(resource: dict[str, Any]) -> list[Issue]:
    """What the fhir.resources R4B models find (no longer on the write path: the one pass above finds all of
    it, checked by tests/fhir_profiles/test_invalid_corpus.py, at a sixth of the cost). Kept for that test."""
    return _model_issues(resource, resource.get("resourceType"))


def _model_issues(resource: dict[str, Any], rtype: Any) -> list[Issue]:
    model = _model(rtype) if isinstance(rtype, str) else None
    issues: list[Issue] = []
    if model is None:
        return issues
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err.get("loc", ()) if p != "__root__")
            path = _path(rtype, loc)
            msg = str(err.get("msg", "invalid"))
            if err.get("type") == "extra_forbidden":
                msg = "unknown element"
            issues.append(Issue("error", "structure" if "missing" in str(err.get("type")) else "value",
                                f"{path}: {msg}", (path,)))
    except (ValueError, TypeError, AttributeError) as exc:  # some model validators raise plain errors
        issues.append(Issue("error", "value", f"{rtype}: {exc}", (rtype,)))
    return issues


def check_shape(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """A JSON object of a known resource type (the one expected): else 400. Cheap; before any access check."""
    if not isinstance(resource, dict):
        raise OperationOutcomeError(400, "structure", "The body must be a JSON object (a FHIR resource)")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise OperationOutcomeError(400, "structure", "The resource has no resourceType")
    if expected_type is not None and rtype != expected_type:
        raise OperationOutcomeError(
            400, "invalid", f"The body's resourceType {rtype!r} does not match the URL's type {expected_type!r}")
    if rtype not in RESOURCE_TYPES:
        raise OperationOutcomeError(400, "not-supported", f"{rtype!r} is not a FHIR R4 resource type")
    return resource


def validate_resource(resource: Any, *, expected_type: str | None = None,
                      references: list[tuple[str, str]] | None = None) -> None:
    """Raise a 400 (shape) or 422 (content) OperationOutcomeError for anything invalid. `references`, when
    given, receives (element path, value) of every Reference.reference met (the repository resolves them)."""
    check_shape(resource, expected_type=expected_type)
    rtype = resource["resourceType"]
    issues = base_issues(resource, references)
    if not any(i.code == "too-costly" for i in issues):
        issues += profile_issues(resource)
    if issues:
        summary = f"{rtype} is invalid: " + "; ".join(i.diagnostics for i in issues[:20])
        if len(issues) > 20:
            summary += f"; and {len(issues) - 20} more"
        raise OperationOutcomeError(422, "processing", summary, issues=issues)
