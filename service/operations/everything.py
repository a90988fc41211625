"""Patient/$everything, for one patient (`Patient/[id]/$everything`) and at type level (`Patient/$everything`:
every patient the caller may see), with `start`, `end`, `_since`, `_type` and `_count`; AuditEvents only when
`_type` names them (https://hl7.org/fhir/R4/patient-operation-everything.html). Implemented in the repository
package (service/repository/everything.py), under the same access condition as every search.
"""

from __future__ import annotations

from typing import Any

from service.operations import Operation
from service.repository.everything import everything as run

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"


def everything(req: Any, repo: Any, rtype: str | None, rid: str | None) -> Any:
    return run(req, repo, rid)


OPERATIONS = (
    Operation(name="everything", level="instance", types=("Patient",), methods=("GET", "POST"), handler=everything,
              definition=DEFINITION),
    Operation(name="everything", level="type", types=("Patient",), methods=("GET", "POST"), handler=everything,
              definition=DEFINITION),
)
