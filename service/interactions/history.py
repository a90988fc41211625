"""History for an instance, a type and the whole system (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

from service.fhir.request import FhirRequest, FhirResponse
from service.repository import Repository


def history(req: FhirRequest, repo: Repository, rtype: str | None = None, rid: str | None = None) -> FhirResponse:
    return repo.history(req, rtype, rid)  # type: ignore[no-any-return]
