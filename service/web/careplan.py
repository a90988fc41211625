"""Edit and agree a care plan: goals, activities (what, which organisation, by when), the coordinator and the
review date; agreeing it ($transition to active) records the agreement. The person's own goals are linked to the
plan when it is saved. The plan's text keeps its review date true when the date changes."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.web.api import entries
from service.web.core import PageError, Web, api_failure, page
from service.web.person import REVIEW_DATE, _name, own_goal
from service.web.session import Session

STAFF = ("practitioner", "admin")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REVIEW_TEXT = re.compile(r"(review(?: due)? by )\d{4}-\d{2}-\d{2}", re.IGNORECASE)


def _valid_date(text: str) -> bool:
    try:
        return bool(DATE.match(text)) and date.fromisoformat(text) is not None
    except ValueError:
        return False


async def _context(web: Web, request: Request, session: Session, plan: dict[str, Any]) -> dict[str, Any]:
    pid = (plan.get("subject") or {}).get("reference", "").removeprefix("Patient/")
    orgs_a = await web.api(request, session, "GET", "Organization", [("_count", "100")])
    orgs = [(f"Organization/{o['id']}", _name(o)) for o in entries(orgs_a.body)] if orgs_a.ok else []
    teams = await web.api(request, session, "GET", "CareTeam", [("subject", f"Patient/{pid}"), ("status", "active")])
    people: dict[str, str] = {}
    for t in entries(teams.body) if teams.ok else []:
        for p in t.get("participant") or []:
            ref = (p.get("member") or {}).get("reference", "")
            if ref.startswith("Practitioner/") and ref not in people:
                a = await web.api(request, session, "GET", ref)
                people[ref] = _name(a.body) if a.ok else ref
    author = (plan.get("author") or {}).get("reference")
    if author and author not in people:
        a = await web.api(request, session, "GET", author)
        people[author] = _name(a.body) if a.ok else author
    goals_a = await web.api(request, session, "GET", "Goal", [("subject", f"Patient/{pid}"), ("_count", "100")])
    goals = entries(goals_a.body) if goals_a.ok else []
    linked = {(g.get("reference") or "") for g in plan.get("goal") or []}
    return {"orgs": orgs, "people": sorted(people.items(), key=lambda x: x[1]), "pid": pid,
            "goals": [g for g in goals if f"Goal/{g.get('id')}" in linked or own_goal(g, pid)]}


def routes(web: Web, router: APIRouter) -> None:
    async def load(request: Request, session: Session) -> dict[str, Any]:
        rid = request.path_params["rid"]
        if not ID.match(rid):
            raise PageError(404, "There is no care plan at this address.", "Not found")
        a = await web.api(request, session, "GET", f"CarePlan/{rid}")
        if not a.ok:
            raise api_failure(a, "this care plan")
        return a.body

    async def view(request: Request, session: Session, errors: dict[str, str] | None = None,
                   status: int = 200) -> Response:
        plan = await load(request, session)
        ctx = await _context(web, request, session, plan)
        review = next((e.get("valueDate") for e in plan.get("extension") or [] if e.get("url") == REVIEW_DATE), "")
        return web.render(request, "staff/careplan.html", session, status=status, plan=plan, review=review,
                          errors=errors or {}, saved=request.query_params.get("saved"), **ctx)

    async def show(request: Request, session: Session) -> Response:
        return await view(request, session)

    async def save(request: Request, session: Session) -> Response:
        form = await web.multi_form(request, session)
        one = {k: v[0] for k, v in form.items() if v}
        plan = await load(request, session)
        ctx = await _context(web, request, session, plan)
        errors: dict[str, str] = {}
        review = one.get("review", "").strip()
        if review and not _valid_date(review):
            errors["review"] = "Enter the review date like 2027-01-31"
        people = dict(ctx["people"])
        if one.get("coordinator") and one["coordinator"] not in people:
            errors["coordinator"] = "Choose a coordinator from the person's care team"
        orgs = dict(ctx["orgs"])
        activities = []
        n = 0
        while f"what-{n}" in one or f"org-{n}" in one:
            what, org, due = one.get(f"what-{n}", "").strip(), one.get(f"org-{n}", ""), one.get(f"due-{n}", "").strip()
            old = (plan.get("activity") or [])[n] if n < len(plan.get("activity") or []) else {"detail": {}}
            n += 1
            if not what:
                continue
            if org and org not in orgs:
                errors[f"org-{n - 1}"] = "Choose an organisation from the list"
            if due and not _valid_date(due):
                errors[f"due-{n - 1}"] = "Enter the date like 2027-01-31"
            detail = dict(old.get("detail") or {})
            detail["description"] = what[:2000]
            detail.setdefault("status", "not-started")
            if org:
                detail["performer"] = [{"reference": org, "display": orgs.get(org, "")}]
            if due:
                detail["scheduledPeriod"] = {**(detail.get("scheduledPeriod") or {}), "end": due}
            activities.append({**old, "detail": detail})
        if errors:
            return await view(request, session, errors=errors, status=400)
        if activities:
            plan["activity"] = activities
        else:
            plan.pop("activity", None)
        if one.get("coordinator"):
            plan["author"] = {"reference": one["coordinator"], "display": people[one["coordinator"]]}
        if review:
            plan["extension"] = [e for e in plan.get("extension") or [] if e.get("url") != REVIEW_DATE] + [
                {"url": REVIEW_DATE, "valueDate": review}]
            # the plan's words say the same date as its review-date extension: nothing stale
            if isinstance(plan.get("description"), str):
                plan["description"] = REVIEW_TEXT.sub(lambda m: m.group(1) + review, plan["description"])
            for note in plan.get("note") or []:
                if isinstance(note.get("text"), str):
                    note["text"] = REVIEW_TEXT.sub(lambda m: m.group(1) + review, note["text"])
        # the person's own goals (in their words) are part of the plan
        linked = {g.get("reference") for g in plan.get("goal") or []}
        for g in ctx["goals"]:
            ref = f"Goal/{g['id']}"
            if own_goal(g, ctx["pid"]) and ref not in linked and g.get("lifecycleStatus") != "cancelled":
                plan.setdefault("goal", []).append({"reference": ref})
        version = (plan.get("meta") or {}).get("versionId")
        a = await web.api(request, session, "PUT", f"CarePlan/{plan['id']}", body=plan,
                          headers={"If-Match": f'W/"{version}"'} if version else None)
        if not a.ok:
            raise api_failure(a, "the care plan")
        return web.redirect(request, f"/web/careplan/{plan['id']}?saved=1", session)

    async def agree(request: Request, session: Session) -> Response:
        await web.form(request, session)
        rid = request.path_params["rid"]
        if not ID.match(rid):
            raise PageError(404, "There is no care plan at this address.", "Not found")
        a = await web.api(request, session, "POST", f"CarePlan/{rid}/$transition",
                          body={"resourceType": "Parameters", "parameter": [{"name": "status", "valueCode": "active"}]})
        if a.status == 409:
            raise PageError(409, "This plan cannot be agreed in its current state (it may already be agreed).",
                            "The plan cannot be agreed")
        if not a.ok:
            raise api_failure(a, "the care plan")
        return web.redirect(request, f"/web/careplan/{rid}?saved=agreed", session)

    for path, fn, methods in (("/web/careplan/{rid}", show, ["GET"]), ("/web/careplan/{rid}", save, ["POST"]),
                              ("/web/careplan/{rid}/agree", agree, ["POST"])):
        router.add_api_route(path, page(web, fn, STAFF), methods=methods)
