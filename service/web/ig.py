"""The IG lead's desk: the break-glass queue (review and record the outcome), audit search with filters, the
objections and denials reports, and a CSV download of each. All through the FHIR operations and AuditEvent
search (service/audit/reports/, service/audit/trail.py), audited like any call."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.web.api import entries
from service.web.core import PAGE_HEADERS, PageError, Web, api_failure, page
from service.web.session import Session

IG = ("ig", "admin")
TOKEN = re.compile(r"^[A-Za-z0-9\-._:/|]{1,128}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _value(p: dict[str, Any]) -> Any:
    for k, v in p.items():
        if k.startswith("value"):
            if isinstance(v, dict):
                return v.get("reference") or v.get("display") or v.get("code") or v.get("value")
            return v
    return None


def flatten(parts: list[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
    """A Parameters entry's parts as one flat row: nested parts joined with dots, repeats joined with '; '."""
    row: dict[str, Any] = {}
    for p in parts or []:
        key = f"{prefix}{p.get('name')}"
        if p.get("part"):
            for k, v in flatten(p["part"], key + ".").items():
                row[k] = f"{row[k]}; {v}" if k in row else v
        else:
            v = _value(p)
            row[key] = f"{row[key]}; {v}" if key in row else v
    return row


def sections(body: Any) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """A report's Parameters: its single values, and its repeated groups as lists of flat rows."""
    single: dict[str, Any] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in (body or {}).get("parameter") or []:
        if p.get("part"):
            groups.setdefault(p["name"], []).append(flatten(p["part"]))
        else:
            single[p["name"]] = _value(p)
    return single, groups


def to_csv(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols or ["empty"])
    w.writeheader()
    for r in rows:
        # (a cell starting with = + - @ is kept as text in spreadsheets)
        w.writerow({k: (f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v) for k, v in r.items()})
    return buf.getvalue()


def csv_response(name: str, rows: list[dict[str, Any]]) -> Response:
    return Response(to_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}.csv"'})


def audit_params(q: Any) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, str]]:
    filters = {k: (q.get(k) or "").strip() for k in ("patient", "user", "organisation", "from", "to", "purpose",
                                                     "outcome")}
    errors: dict[str, str] = {}
    params: list[tuple[str, str]] = [("_count", "100")]
    for k in ("patient", "user", "organisation", "purpose"):
        if filters[k] and not TOKEN.match(filters[k]):
            errors[k] = "Use letters, numbers and - . _ / only"
    for k in ("from", "to"):
        if filters[k] and not DATE.match(filters[k]):
            errors[k] = "Enter a date like 2026-12-07"
    if errors:
        return params, filters, errors
    if filters["patient"]:
        params.append(("patient", filters["patient"].removeprefix("Patient/")))
    if filters["user"]:
        params.append(("altid", filters["user"]))
    if filters["organisation"]:
        org = filters["organisation"]
        params.append(("agent", org if "/" in org else f"Organization/{org}"))
    if filters["from"]:
        params.append(("date", f"ge{filters['from']}"))
    if filters["to"]:
        params.append(("date", f"le{filters['to']}"))
    if filters["purpose"]:
        params.append(("purpose", filters["purpose"]))
    if filters["outcome"] in ("0", "4", "8"):
        params.append(("outcome", filters["outcome"]))
    return params, filters, errors


def event_row(ev: dict[str, Any]) -> dict[str, Any]:
    user = next((a for a in ev.get("agent") or [] if a.get("requestor")), None) or (ev.get("agent") or [{}])[0]
    purposes = [cd.get("code") for pe in ev.get("purposeOfEvent") or [] for cd in pe.get("coding") or []]
    reason = next((pe.get("text") for pe in ev.get("purposeOfEvent") or [] if pe.get("text")), "")
    patient = next(((e.get("what") or {}).get("reference") for e in ev.get("entity") or []
                    if (e.get("what") or {}).get("reference", "").startswith("Patient/")), "")
    what = next(((e.get("what") or {}).get("reference") or e.get("description") for e in ev.get("entity") or []
                 if (e.get("role") or {}).get("code") in ("4", "24")), "")
    return {"id": ev.get("id"), "when": ev.get("recorded"),
            "user": user.get("altId") or (user.get("who") or {}).get("reference") or "",
            "organisation": next(((a.get("who") or {}).get("reference") or ((a.get("who") or {}).get("identifier")
                                                                             or {}).get("value")
                                  for a in ev.get("agent") or []
                                  if any(cd.get("code") == "PROV" for t in [a.get("type") or {}]
                                         for cd in t.get("coding") or [])), ""),
            "action": ", ".join(cd.get("code", "") for cd in ev.get("subtype") or []),
            "what": what, "patient": patient, "purpose": ", ".join(p for p in purposes if p),
            "reason": reason, "outcome": {"0": "success", "4": "refused", "8": "failed"}.get(ev.get("outcome"),
                                                                                          ev.get("outcome"))}


def routes(web: Web, router: APIRouter) -> None:
    async def queue(request: Request, session: Session) -> Response:
        status = request.query_params.get("status") or "pending"
        if status not in ("pending", "reviewed", "all"):
            status = "pending"
        a = await web.api(request, session, "GET", "$break-glass-queue", [("status", status)])
        if not a.ok:
            raise api_failure(a, "the break-glass queue")
        single, groups = sections(a.body)
        if request.url.path.endswith(".csv"):
            return csv_response(f"break-glass-{status}", groups.get("grant", []))
        return web.render(request, "ig/break_glass.html", session, status_filter=status, grants=groups.get("grant", []),
                          total=single.get("total"), done=request.query_params.get("done"), errors={})

    async def review(request: Request, session: Session) -> Response:
        form = await web.form(request, session)
        grant, outcome, note = str(form.get("grant", "")), str(form.get("outcome", "")), str(form.get("note", "")).strip()
        if outcome not in ("appropriate", "inappropriate") or (outcome == "inappropriate" and not note):
            a = await web.api(request, session, "GET", "$break-glass-queue", [("status", "pending")])
            _, groups = sections(a.body if a.ok else None)
            msg = "Choose whether the access was appropriate" if outcome not in ("appropriate", "inappropriate") \
                else "Say why the access was not appropriate"
            return web.render(request, "ig/break_glass.html", session, status=400, status_filter="pending",
                              grants=groups.get("grant", []), total=None, done=None, errors={grant: msg})
        params = [{"name": "grant", "valueString": grant}, {"name": "outcome", "valueCode": outcome}]
        if note:
            params.append({"name": "note", "valueString": note[:2000]})
        a = await web.api(request, session, "POST", "$break-glass-review",
                          body={"resourceType": "Parameters", "parameter": params})
        if a.status == 403:
            raise PageError(403, "You cannot review your own emergency access; another IG lead must.",
                            "You cannot review this")
        if a.status == 409:
            raise PageError(409, "Someone has already reviewed this emergency access.", "Already reviewed")
        if not a.ok:
            raise api_failure(a, "the review")
        return web.redirect(request, "/web/ig/break-glass?done=1", session)

    async def audit(request: Request, session: Session) -> Response:
        params, filters, errors = audit_params(request.query_params)
        events: list[dict[str, Any]] = []
        searched = any(filters.values())
        if searched and not errors:
            a = await web.api(request, session, "GET", "AuditEvent", params)
            if a.status == 400:
                errors["patient"] = "These filters could not be used: " + a.problem()
            elif not a.ok:
                raise api_failure(a, "the audit log")
            else:
                events = [event_row(e) for e in entries(a.body) if e.get("resourceType") == "AuditEvent"]
        if request.url.path.endswith(".csv"):
            return csv_response("audit", events)
        return web.render(request, "ig/audit.html", session, status=400 if errors else 200, filters=filters,
                          errors=errors, events=events, searched=searched,
                          query=str(request.url.query))

    def report(op: str, title: str, group_names: tuple[str, ...]) -> Any:
        async def view(request: Request, session: Session) -> Response:
            params = [(k, v) for k, v in request.query_params.items() if k in ("start", "end") and DATE.match(v)]
            a = await web.api(request, session, "GET", f"${op}", params)
            if not a.ok:
                raise api_failure(a, f"the {title.lower()}")
            single, groups = sections(a.body)
            if request.url.path.endswith(".csv"):
                rows = [{"section": g, **r} for g in group_names for r in groups.get(g, [])]
                return csv_response(op, rows)
            return web.render(request, "ig/report.html", session, title=title, single=single,
                              groups=[(g, groups.get(g, [])) for g in group_names], csv=f"{request.url.path}.csv")
        return view

    objections = report("objections-report", "Objections and consents in force",
                        ("kind", "organisation", "dataClass", "scope", "policyRule"))
    denials = report("denials-report", "Refused accesses", ("reason", "organisation", "user"))
    for path, fn, methods in (("/web/ig/break-glass", queue, ["GET"]), ("/web/ig/break-glass.csv", queue, ["GET"]),
                              ("/web/ig/break-glass", review, ["POST"]), ("/web/ig/audit", audit, ["GET"]),
                              ("/web/ig/audit.csv", audit, ["GET"]), ("/web/ig/objections", objections, ["GET"]),
                              ("/web/ig/objections.csv", objections, ["GET"]), ("/web/ig/denials", denials, ["GET"]),
                              ("/web/ig/denials.csv", denials, ["GET"])):
        router.add_api_route(path, page(web, fn, IG), methods=methods)
