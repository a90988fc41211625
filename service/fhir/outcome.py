"""OperationOutcome: the one error type of the service and its rendering.

Every failure raises `OperationOutcomeError`; one handler in `service.api.errors` turns it into an
HTTP response. Nothing else builds error responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/issue-type
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def outcome_bytes(issues: list[Issue] | tuple[Issue, ...]) -> bytes:
    return orjson.dumps(outcome(issues))


def information(text: str, code: str = "informational") -> dict[str, Any]:
    return outcome([Issue("information", code, text)])


@dataclass
class OperationOutcomeError(Exception):
    status: int
    issues: list[Issue]
    headers: dict[str, str] = field(default_factory=dict)

    def __init__(self, status: int, code: str, diagnostics: str, *, expression: tuple[str, ...] = (),
                 issues: list[Issue] | None = None, headers: dict[str, str] | None = None,
                 severity: str = "error") -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = issues if issues is not None else [Issue(severity, code, diagnostics, expression)]
        self.headers = headers or {}

    @property
    def diagnostics(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def body(self) -> bytes:
        return outcome_bytes(self.issues)


def bad_request(diagnostics: str, code: str = "invalid", **kw: Any) -> OperationOutcomeError:
    return OperationOutcomeError(400, code, diagnostics, **kw)


def not_found(diagnostics: str) -> OperationOutcomeError:
    return OperationOutcomeError(404, "not-found", diagnostics)


def gone(diagnostics: str) -> OperationOutcomeError:
    return OperationOutcomeError(410, "deleted", diagnostics)


def precondition_failed(diagnostics: str) -> OperationOutcomeError:
    return OperationOutcomeError(412, "conflict", diagnostics)


def conflict(diagnostics: str) -> OperationOutcomeError:
    return OperationOutcomeError(409, "conflict", diagnostics)


def forbidden(diagnostics: str) -> OperationOutcomeError:
    return OperationOutcomeError(403, "forbidden", diagnostics)


def unprocessable(issues: list[Issue]) -> OperationOutcomeError:
    return OperationOutcomeError(422, "processing", "", issues=issues)
