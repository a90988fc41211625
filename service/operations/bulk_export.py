"""FHIR Bulk Data Access 2.0 `$export` (https://hl7.org/fhir/uv/bulkdata/STU2/export.html) at system, Patient and
Group level, and the status URL it gives (`$export-poll-status`: GET polls, DELETE cancels). The work is in
service/export: the job runs later, as the caller, through the same repository and policy."""

from __future__ import annotations

from service.export import api
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository

DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"


def system_export(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    return api.kickoff(req, repo, "system", None)


def patient_export(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    return api.kickoff(req, repo, "patient", None)


def group_export(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    return api.kickoff(req, repo, "group", rid)


def poll_status(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    return api.status(req, repo)


OPERATIONS = (
    Operation("export", "system", (), ("GET", "POST"), system_export, definition=DEFINITION + "export"),
    Operation("export", "type", ("Patient",), ("GET", "POST"), patient_export,
              definition=DEFINITION + "patient-export"),
    Operation("export", "instance", ("Group",), ("GET", "POST"), group_export, definition=DEFINITION + "group-export"),
    Operation("export-poll-status", "system", (), ("GET", "DELETE"), poll_status),
)
