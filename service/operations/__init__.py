"""FHIR $operations: one module per operation (or family), each listing its `OPERATIONS`.

A handler is `(req, repo, rtype, rid) -> FhirResponse`, with the request's Repository (the one door to the
data). `level` is "system", "type" or "instance". The bootstrap builds the registry from `MODULES`; the router
dispatches through it and the CapabilityStatement lists exactly what it holds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Handler = Callable[..., Any]

MODULES = (
    "service.operations.everything",
    "service.audit.reports.access_log",
    "service.audit.reports.break_glass_queue",
    "service.audit.reports.objections",
    "service.audit.reports.denials",
    "service.audit.reports.access",
    "service.operations.assessment_start",
    "service.operations.assessment_answers",
    "service.operations.assessment_complete",
    "service.operations.careplan_generate",
    "service.operations.careplan_transition",
    "service.operations.careteam_members",
    "service.operations.workflow_queries",
    "service.operations.assessment_metrics",
    "service.operations.bulk_export",
    "service.operations.meta",
    "service.operations.validate",
    "service.operations.terminology",
)


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    level: str  # system | type | instance
    types: tuple[str, ...]  # resource types it applies to (empty for system level)
    methods: tuple[str, ...]
    handler: Handler
    writes: bool = False
    definition: str | None = None  # canonical URL of the OperationDefinition, when standard


class Operations:
    """The registry: (level, type, name) -> Operation."""

    def __init__(self, ops: Iterable[Operation]) -> None:
        self.by_key: dict[tuple[str, str, str], Operation] = {}
        for op in ops:
            for t in op.types or ("",):
                self.by_key[(op.level, t, op.name)] = op

    @classmethod
    def from_modules(cls, modules: Iterable[str] = MODULES) -> Operations:
        return cls(op for m in modules for op in importlib.import_module(m).OPERATIONS)

    def find(self, level: str, rtype: str, name: str) -> Operation | None:
        return self.by_key.get((level, rtype, name)) or self.by_key.get((level, "*", name))

    def items(self) -> list[tuple[tuple[str, str, str], Operation]]:
        return sorted(self.by_key.items(), key=lambda kv: kv[0])
