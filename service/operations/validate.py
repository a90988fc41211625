"""$validate (https://hl7.org/fhir/R4/resource-operation-validate.html): would this resource, or this write, be
accepted? Answers an OperationOutcome and stores nothing.

    POST [base]/[type]/$validate          body: the resource, or Parameters {resource, mode, profile}
    POST [base]/[type]/[id]/$validate     the same for an existing instance (mode update or delete)

- no `mode`: the resource's content: the base specification (structure, invariants, required bindings,
  narrative), our profile rules, and whether its local references resolve;
- `mode=create` / `mode=update`: the write itself is tried as the caller, through the repository (the access
  policy, the type's write rules, validation, references) inside a SAVEPOINT that is always rolled back;
- `mode=delete`: whether the caller may delete the instance (also tried and rolled back);
- `profile`: a canonical URL; the base profile of the type (http://hl7.org/fhir/StructureDefinition/[type]) is
  what this server validates against; any other profile is answered with an error issue saying it is not known.

A valid resource gets 200 with one `information` issue; an invalid one 200 with its error issues (each naming
the element path), as the specification says: the operation succeeded, the resource did not. A request that is
itself malformed (no resource, an unknown mode) gets 400. A refusal of the caller (403, 404 for what they may not
see) is answered as the write itself would be.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from service.fhir.outcome import Issue, OperationOutcomeError, bad_request, outcome
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.types import RESOURCE_TYPES
from service.fhir.validation import check_shape, validate_resource
from service.operations import Operation
from service.repository import Repository

MODES = ("create", "update", "delete")
BASE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
REFUSALS = (401, 403, 404, 405, 410)


class _Rollback(Exception):
    """Raised inside the trial write's savepoint to undo it."""


def _input(req: FhirRequest, rtype: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    mode, profile = req.param("mode"), req.param("profile")
    resource = None
    if req.body:
        body = req.json_body()
        if isinstance(body, dict) and body.get("resourceType") == "Parameters" and rtype != "Parameters":
            for p in body.get("parameter") or ():
                if not isinstance(p, dict):
                    continue
                if p.get("name") == "resource" and isinstance(p.get("resource"), dict):
                    resource = p["resource"]
                elif p.get("name") == "mode":
                    mode = p.get("valueCode") or p.get("valueString")
                elif p.get("name") == "profile":
                    profile = p.get("valueUri") or p.get("valueCanonical") or p.get("valueString")
        else:
            resource = body
    return resource, mode, profile


def _answer(issues: list[Issue]) -> FhirResponse:
    if not issues:
        issues = [Issue("information", "informational", "The resource is valid (no errors found)")]
    return FhirResponse(200, orjson.dumps(outcome(issues)))


def validate(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    assert rtype is not None
    if rtype not in RESOURCE_TYPES:
        raise bad_request(f"{rtype!r} is not a FHIR R4 resource type")
    resource, mode, profile = _input(req, rtype)
    if mode is not None and mode not in MODES:
        raise bad_request(f"Parameter 'mode' must be one of {', '.join(MODES)}, not {mode!r}", code="value",
                          expression=("mode",))
    if mode in ("update", "delete") and rid is None:
        rid = resource.get("id") if isinstance(resource, dict) and isinstance(resource.get("id"), str) else None
        if rid is None:
            raise bad_request(f"mode={mode} validates a change to an existing resource: call "
                              f"{rtype}/[id]/$validate or give the resource's id", code="required")
    issues: list[Issue] = []
    if profile is not None and profile.split("|", 1)[0] != BASE_PROFILE + rtype:
        issues.append(Issue("error", "not-supported", f"The profile {profile!r} is not known to this server: it "
                            f"validates against the base specification ({BASE_PROFILE}{rtype}) and its own rules",
                            ("profile",)))
    if mode == "delete":
        return _answer(issues + _try(repo, lambda: repo.delete(rtype, str(rid))))
    if resource is None:
        raise bad_request("$validate needs the resource: as the body, or as the Parameters' 'resource'",
                          code="required")
    check_shape(resource, expected_type=rtype)
    if rid is not None and mode == "update" and resource.get("id") not in (None, rid):
        issues.append(Issue("error", "invalid", f"{rtype}.id: {resource.get('id')!r} does not match the id "
                            f"{rid!r} being updated", (f"{rtype}.id",)))
        return _answer(issues)
    trial = copy.deepcopy(resource)
    if mode == "create":
        return _answer(issues + _try(repo, lambda: repo.create(trial)))
    if mode == "update":
        trial["id"] = rid
        return _answer(issues + _try(repo, lambda: repo.update(rtype, str(rid), trial)))
    # content only: the base spec and our rules, then whether its local references resolve (as a create would)
    try:
        validate_resource(trial, expected_type=rtype)
    except OperationOutcomeError as err:
        return _answer(issues + err.issues)
    return _answer(issues + _try(repo, lambda: repo.create(trial), content_only=True))


def _try(repo: Repository, write: Any, *, content_only: bool = False) -> list[Issue]:
    """Run the write inside a savepoint that is always rolled back; its refusal's issues, if any."""
    found: list[Issue] = []
    savepoint = repo.savepoint()
    try:
        write()
    except OperationOutcomeError as err:
        if err.status in REFUSALS and not content_only:
            savepoint.rollback()
            raise
        if err.status not in REFUSALS:
            found = err.issues
    finally:
        if savepoint.is_active:
            savepoint.rollback()
    return found


OPERATIONS = (
    Operation(name="validate", level="type", types=("*",), methods=("POST",), handler=validate, writes=True,
              definition=DEFINITION),
    Operation(name="validate", level="instance", types=("*",), methods=("POST",), handler=validate, writes=True,
              definition=DEFINITION),
)
