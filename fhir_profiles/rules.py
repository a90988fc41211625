"""Profile rules beyond the base spec. Each rule is a function (resource) -> issues, registered per type.

Add a rule: write a function and append it to RULES under its resource type (or "*" for every type).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fhir_profiles.identifiers import (
    NHS_NUMBER_SYSTEM,
    ODS_ORG_SYSTEM,
    nhs_number_problem,
    ods_code_problem,
)
from service.fhir.outcome import Issue

Rule = Callable[[dict[str, Any]], list[Issue]]


def _identifiers(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Identifier-shaped object (with system and value) anywhere in the resource."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "value" in node and "code" not in node:
            yield path, node
        for key, child in node.items():
            if isinstance(child, (dict, list)):
                yield from _identifiers(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _identifiers(child, f"{path}[{i}]")


def nhs_numbers_valid(resource: dict[str, Any]) -> list[Issue]:
    issues = []
    for path, ident in _identifiers(resource, resource.get("resourceType", "Resource")):
        if ident.get("system") == NHS_NUMBER_SYSTEM:
            problem = nhs_number_problem(ident.get("value"))
            if problem:
                issues.append(Issue("error", "value", f"{path}.value: {problem}", (f"{path}.value",)))
    return issues


def ods_codes_well_formed(resource: dict[str, Any]) -> list[Issue]:
    issues = []
    for path, ident in _identifiers(resource, resource.get("resourceType", "Resource")):
        if ident.get("system") == ODS_ORG_SYSTEM:
            problem = ods_code_problem(ident.get("value"))
            if problem:
                issues.append(Issue("error", "value", f"{path}.value: {problem}", (f"{path}.value",)))
    return issues


RULES: dict[str, list[Rule]] = {
    "*": [nhs_numbers_valid, ods_codes_well_formed],
}


def profile_issues(resource: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    for rule in RULES.get("*", []) + RULES.get(resource.get("resourceType", ""), []):
        issues.extend(rule(resource))
    return issues
