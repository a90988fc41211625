"""Patient/{id}/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html).

The patient's compartment (CompartmentDefinition-patient) plus the resources those reference that are
outside any patient compartment (Practitioner, Organization, ...), paged like a search. Parameters:
`_since` (instant), `_type` (comma-separated types), `_count`. Implemented by the search engine.
"""

from __future__ import annotations

from typing import Any

from service.operations import Operation


def everything(req: Any, repo: Any, rtype: str | None, rid: str | None) -> Any:
    assert rid is not None
    return repo.everything(req, rid)


OPERATIONS = (
    Operation(name="everything", level="instance", types=("Patient",), methods=("GET", "POST"), handler=everything, definition="http://hl7.org/fhir/OperationDefinition/Patient-everything"),
)
