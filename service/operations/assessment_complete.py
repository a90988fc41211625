"""$complete: finish a joint assessment.

`POST /fhir/QuestionnaireResponse/{id}/$complete`, optional Parameters `baseVersion` (or If-Match):
the assessment must be in progress and hold an answer to every enabled required item; otherwise 422
with one issue per missing or invalid linkId. On success the status is completed, the completion time
is recorded (extension assessment-completed) and the answer is 200 with the completed assessment.
"""

from __future__ import annotations

import copy

from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.responses import write_response
from service.operations import Operation
from service.operations.assessment_answers import RTYPE, base_version, load_assessment, precondition
from service.repository import Repository
from service.workflows import writes
from service.workflows.params import Params


def complete(req: FhirRequest, repo: Repository, rtype: str, rid: str) -> FhirResponse:
    params = Params(req)
    cur, current, _q = load_assessment(repo, rid)
    if current.get("status") != "in-progress":
        raise OperationOutcomeError(409, "business-rule", f"{RTYPE}/{rid} is {current.get('status')}, not in "
                                    "progress; only an assessment in progress can be completed")
    base = base_version(req, params, cur, required=False)
    if base is not None and base != cur.version:
        raise precondition(f"{RTYPE}/{rid} changed after version {base} (it is at version {cur.version}); "
                           "read it again before completing it")
    new = {k: copy.deepcopy(v) for k, v in current.items() if k != "meta"}
    new["status"] = "completed"
    stored = writes.update(repo, cur, new, writes.Change(activity="complete-assessment"))
    return write_response(req, stored, 200, repo.base, f"Completed {RTYPE}/{rid}")


OPERATIONS = (
    Operation("complete", "instance", (RTYPE,), ("POST",), complete, writes=True),
)
