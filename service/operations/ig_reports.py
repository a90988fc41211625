"""The IG lead's reports, as system-level operations for the IG lead and administrators only:

- `GET [base]/$objections-report`: objections and consents in force, by kind and organisation
  (service/operations/ig_report_objections.py);
- `GET [base]/$denials-report[?start=][&end=]`: refused requests by reason, organisation and user
  (service/operations/ig_report_denials.py);
- `GET [base]/$access-report[?start=][&end=]`: accesses by organisation (service/operations/ig_report_access.py).

`start`/`end` are FHIR dates or dateTimes (a date covers its whole day); the window defaults to the last
30 days and may not exceed 366. Each answers a Parameters resource; the modules document the parts.
"""

from __future__ import annotations

from service.operations import Operation, register
from service.operations.ig_report_access import access_report
from service.operations.ig_report_denials import denials_report
from service.operations.ig_report_objections import objections_report

register(Operation(name="objections-report", level="system", types=(), methods=("GET",), handler=objections_report))
register(Operation(name="denials-report", level="system", types=(), methods=("GET",), handler=denials_report))
register(Operation(name="access-report", level="system", types=(), methods=("GET",), handler=access_report))
