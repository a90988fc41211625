"""The professional's pages: my caseload, open a person's record (break-glass with a reason when there is no care
relationship), the person's assessments and care plans. Every call goes through the FHIR pipeline."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.web.api import entries
from service.web.core import PageError, Web, api_failure, page
from service.web.person import _name
from service.web.session import Session

NHS = "https://fhir.nhs.uk/Id/nhs-number"
STAFF = ("practitioner", "admin")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def nhs_number(patient: dict[str, Any]) -> str:
    for i in patient.get("identifier") or []:
        if i.get("system") == NHS:
            v = str(i.get("value", ""))
            return f"{v[:3]} {v[3:6]} {v[6:]}" if len(v) == 10 else v
    return ""


def routes(web: Web, router: APIRouter) -> None:
    async def caseload(request: Request, session: Session) -> Response:
        a = await web.api(request, session, "GET", "Practitioner/$my-caseload")
        if not a.ok:
            raise api_failure(a, "your caseload")
        people = [{"id": p.get("id"), "name": _name(p), "nhs": nhs_number(p), "born": p.get("birthDate")}
                  for p in entries(a.body) if p.get("resourceType") == "Patient"]
        return web.render(request, "staff/caseload.html", session, people=people)

    async def find(request: Request, session: Session) -> Response:
        q = (request.query_params.get("q") or "").replace(" ", "").strip()
        if not q:
            return web.render(request, "staff/find.html", session, q="", error=None, missing=False)
        if q.isdigit() and len(q) == 10:
            a = await web.api(request, session, "GET", "Patient", [("identifier", f"{NHS}|{q}")])
        elif ID.match(q):
            a = await web.api(request, session, "GET", "Patient", [("_id", q)])
        else:
            return web.render(request, "staff/find.html", session, status=400, q=q, missing=False,
                              error="Enter a 10-digit NHS number, like 943 476 5919")
        found = [p for p in entries(a.body) if p.get("resourceType") == "Patient"] if a.ok else []
        if len(found) == 1:
            return web.redirect(request, f"/web/record/{found[0]['id']}", session)
        return web.render(request, "staff/find.html", session, q=q, error=None, missing=True)

    async def record(request: Request, session: Session) -> Response:
        pid = request.path_params["pid"]
        if not ID.match(pid):
            raise PageError(404, "There is no record at this address.", "Not found")
        a = await web.api(request, session, "GET", f"Patient/{pid}")
        if a.status in (403, 404):
            suppressed = "suppressed" in a.issue_codes()
            return web.render(request, "staff/no_access.html", session, status=a.status, pid=pid, q=pid,
                              suppressed=suppressed, error=None)
        if not a.ok:
            raise api_failure(a, "this record")
        patient = a.body
        plans = await web.api(request, session, "GET", "CarePlan", [("subject", f"Patient/{pid}"), ("_count", "20")])
        forms = await web.api(request, session, "GET", "QuestionnaireResponse",
                              [("subject", f"Patient/{pid}"), ("_count", "20")])
        withheld = [what for what, ans in (("care plans", plans), ("assessments", forms))
                    if ans.status == 403 and "suppressed" in ans.issue_codes()]
        return web.render(request, "staff/record.html", session, patient=patient, name=_name(patient),
                          nhs=nhs_number(patient), plans=entries(plans.body) if plans.ok else [],
                          assessments=entries(forms.body) if forms.ok else [], withheld=withheld)

    async def break_glass(request: Request, session: Session) -> Response:
        form = await web.form(request, session)
        q = str(form.get("q", "")).replace(" ", "").strip()
        reason = str(form.get("reason", "")).strip()
        if not reason or len(reason) < 10:
            return web.render(request, "staff/no_access.html", session, status=400, pid=None, q=q, suppressed=False,
                              error="Say why you need this record now, in at least a few words")
        headers = {"X-Purpose-Of-Use": "BTG", "X-Break-Glass-Reason": reason[:500]}
        if q.isdigit() and len(q) == 10:
            a = await web.api(request, session, "GET", "Patient", [("identifier", f"{NHS}|{q}")], headers=headers)
            found = [p for p in entries(a.body) if p.get("resourceType") == "Patient"] if a.ok else []
            pid = found[0]["id"] if len(found) == 1 else None
        elif ID.match(q):
            a = await web.api(request, session, "GET", f"Patient/{q}", headers=headers)
            pid = q if a.ok else None
        else:
            raise PageError(400, "Enter a 10-digit NHS number.")
        if a.status == 403:
            raise PageError(403, "Your role may not use emergency access. Ask a colleague who is allowed, or the "
                                 "person's care team.", "You cannot use emergency access")
        if not a.ok and a.status != 404:
            raise api_failure(a, "this record")
        if pid is None:
            raise PageError(404, "There is no record with this NHS number.", "Not found")
        return web.redirect(request, f"/web/record/{pid}", session)

    for path, fn, methods in (("/web/caseload", caseload, ["GET"]), ("/web/find", find, ["GET"]),
                              ("/web/record/{pid}", record, ["GET"]), ("/web/break-glass", break_glass, ["POST"])):
        router.add_api_route(path, page(web, fn, STAFF), methods=methods)
