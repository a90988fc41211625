"""FHIR $operations: one module per operation, each registering itself here.

A handler is `(req, session, rtype, rid) -> FhirResponse`. `level` is "system", "type" or "instance".
The CapabilityStatement lists exactly what is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    level: str  # system | type | instance
    types: tuple[str, ...]  # resource types it applies to (empty for system level)
    methods: tuple[str, ...]
    handler: Handler
    writes: bool = False
    definition: str | None = None  # canonical URL of the OperationDefinition, when standard


REGISTRY: dict[tuple[str, str, str], Operation] = {}


def register(op: Operation) -> Operation:
    for t in op.types or ("",):
        REGISTRY[(op.level, t, op.name)] = op
    return op


def find(level: str, rtype: str, name: str) -> Operation | None:
    return REGISTRY.get((level, rtype, name)) or REGISTRY.get((level, "*", name))
