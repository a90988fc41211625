"""The joint assessment at the kitchen table: start or continue it, one section at a time (each saves on its own
through $save-answers, with the version it was read at, so a conflict shows both values), pre-filled answers
marked, complete it ($complete), then generate the care plan ($generate-careplan)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.web import assessment_form as af
from service.web.api import entries
from service.web.core import PageError, Web, api_failure, page
from service.web.person import _name
from service.web.session import Session

STAFF = ("practitioner", "admin")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
UNIT = re.compile(r"linkId='([^']+)'")
WHO = re.compile(r"was changed by (.+?) after version")


async def _load(web: Web, request: Request, session: Session, rid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if not ID.match(rid):
        raise PageError(404, "There is no assessment at this address.", "Not found")
    a = await web.api(request, session, "GET", f"QuestionnaireResponse/{rid}")
    if not a.ok:
        raise api_failure(a, "this assessment")
    qr = a.body
    canonical = str(qr.get("questionnaire") or "")
    url, _, version = canonical.partition("|")
    params = [("url", url)] + ([("version", version)] if version else [])
    f = await web.api(request, session, "GET", "Questionnaire", params)
    forms = [x for x in entries(f.body) if x.get("resourceType") == "Questionnaire"] if f.ok else []
    if not forms:
        raise PageError(500, "The assessment form could not be found. Please tell your system administrator.")
    return qr, forms[0]


def _section(q: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    secs = af.sections(q)
    return next((s for s in secs if s.get("linkId") == wanted), secs[0])


def routes(web: Web, router: APIRouter) -> None:
    async def start(request: Request, session: Session) -> Response:
        await web.form(request, session)
        pid = request.path_params["pid"]
        if not ID.match(pid):
            raise PageError(404, "There is no record at this address.", "Not found")
        a = await web.api(request, session, "POST", f"Patient/{pid}/$start-assessment")
        if not a.ok or not isinstance(a.body, dict):
            raise api_failure(a, "the assessment")
        return web.redirect(request, f"/web/assessment/{a.body['id']}", session)

    async def show(request: Request, session: Session, *, posted: dict[str, list[str]] | None = None,
                   errors: dict[str, str] | None = None, conflicts: list[dict[str, Any]] | None = None,
                   status: int = 200, base: str | None = None, missing: list[str] | None = None) -> Response:
        rid = request.path_params["rid"]
        qr, q = await _load(web, request, session, rid)
        sec = _section(q, request.query_params.get("section") or (posted or {}).get("section", [None])[0])
        glob = af.current_answers(qr)
        nodes = af.render([sec], qr.get("item") or [], glob, posted)
        await _reference_choices(web, request, session, nodes)
        subject = (qr.get("subject") or {}).get("reference", "")
        who = await web.api(request, session, "GET", subject) if subject.startswith("Patient/") else None
        return web.render(request, "staff/assessment.html", session, status=status, qr=qr, q=q, section=sec,
                          sections=af.sections(q), nodes=nodes[0].get("children", []), errors=errors or {},
                          conflicts=conflicts or [], version=base or (qr.get("meta") or {}).get("versionId"),
                          person=_name(who.body) if who is not None and who.ok else "",
                          saved=request.query_params.get("saved"), missing=missing or [])

    async def view(request: Request, session: Session) -> Response:
        return await show(request, session)

    async def save(request: Request, session: Session) -> Response:
        rid = request.path_params["rid"]
        form = await web.multi_form(request, session)
        qr, q = await _load(web, request, session, rid)
        wanted = (form.get("section") or [""])[0]
        if wanted not in {x.get("linkId") for x in af.sections(q)}:
            raise PageError(400, "The form could not be read. Please go back, reload the page and try again.")
        sec = _section(q, wanted)
        item, errors = af.read_section(sec, form, af.current_answers(qr))
        if errors:
            return await show(request, session, posted=form, errors=errors, status=400,
                              base=(form.get("version") or [""])[0])
        base = (form.get("version") or [""])[0]
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "response", "resource": {"resourceType": "QuestionnaireResponse", "status": "in-progress",
                                              "questionnaire": qr.get("questionnaire"), "subject": qr.get("subject"),
                                              "item": [item]}},
            {"name": "section", "valueString": sec["linkId"]}]}
        if base.isdigit():
            body["parameter"].append({"name": "baseVersion", "valueInteger": int(base)})
        a = await web.api(request, session, "POST", f"QuestionnaireResponse/{rid}/$save-answers", body=body)
        if a.status == 412:
            return await _conflict(request, session, form, a, q, sec)
        if a.status == 409:
            raise PageError(409, "This assessment has been completed, so it can no longer be changed here.",
                            "The assessment is complete")
        if not a.ok:
            raise api_failure(a, "your answers")
        return web.redirect(request, f"/web/assessment/{rid}?section={sec['linkId']}&saved=1", session)

    async def _conflict(request: Request, session: Session, form: dict[str, list[str]], a: Any,
                        q: dict[str, Any], sec: dict[str, Any]) -> Response:
        rid = request.path_params["rid"]
        fresh, _ = await _load(web, request, session, rid)
        now = af.current_answers(fresh)
        index = _index(q)
        conflicts = []
        for issue in (a.body or {}).get("issue") or []:
            unit = next((m.group(1) for e in issue.get("expression") or [] for m in [UNIT.search(e)] if m), None)
            if unit is None:
                continue
            who = await _author_name(web, request, session, fresh, unit) or \
                (WHO.search(issue.get("diagnostics") or "") or [None, "someone else"])[1]
            theirs = "; ".join(af.answer_text(x) for x in now.get(unit, [])) or "(no answer)"
            it = index.get(unit, {})
            mine_raw = form.get(unit, [])
            mine = "; ".join(_raw_text(it, v) for v in mine_raw if v.strip()) or "(no answer)"
            conflicts.append({"text": it.get("text") or unit, "who": who,
                              "mine": mine, "theirs": theirs, "id": unit.replace(".", "-")})
        # the page shows the person's own answers again, based on the version now saved: saving again keeps theirs
        return await show(request, session, posted=form, conflicts=conflicts, status=409,
                          base=(fresh.get("meta") or {}).get("versionId"))

    async def complete(request: Request, session: Session) -> Response:
        rid = request.path_params["rid"]
        form = await web.form(request, session)
        qr, q = await _load(web, request, session, rid)
        missing = af.missing_required(q, qr)
        if missing:
            return await show(request, session, status=400, missing=missing)
        params = [{"name": "baseVersion", "valueInteger": int(form["version"])}] if str(
            form.get("version", "")).isdigit() else []
        a = await web.api(request, session, "POST", f"QuestionnaireResponse/{rid}/$complete",
                          body={"resourceType": "Parameters", "parameter": params})
        if a.status == 412:
            raise PageError(409, "Someone saved answers after you opened this page. Reload it, check their answers "
                                 "and complete it again.", "Someone else made a change")
        if a.status == 422:
            return await show(request, session, status=400, missing=[af_plain(a.problem())])
        if not a.ok:
            raise api_failure(a, "the assessment")
        return web.redirect(request, f"/web/assessment/{rid}?saved=complete", session)

    async def generate(request: Request, session: Session) -> Response:
        rid = request.path_params["rid"]
        await web.form(request, session)
        a = await web.api(request, session, "POST", f"QuestionnaireResponse/{rid}/$generate-careplan")
        if not a.ok or not isinstance(a.body, dict):
            raise api_failure(a, "the care plan")
        return web.redirect(request, f"/web/careplan/{a.body['id']}", session)

    for path, fn, methods in (("/web/record/{pid}/start-assessment", start, ["POST"]),
                              ("/web/assessment/{rid}", view, ["GET"]),
                              ("/web/assessment/{rid}/save", save, ["POST"]),
                              ("/web/assessment/{rid}/complete", complete, ["POST"]),
                              ("/web/assessment/{rid}/generate-careplan", generate, ["POST"])):
        router.add_api_route(path, page(web, fn, STAFF), methods=methods)


async def _reference_choices(web: Web, request: Request, session: Session, nodes: list[dict[str, Any]]) -> None:
    """A reference answer (the GP practice) is chosen from the organisations on the record, not typed."""
    refs = [n for n in _walk(nodes) if n.get("type") == "reference"]
    if not refs:
        return
    a = await web.api(request, session, "GET", "Organization", [("_count", "100")])
    orgs = [(f"Organization/{o['id']}", _name(o)) for o in entries(a.body)] if a.ok else []
    for n in refs:
        current = [(v, v) for v in n.get("values") or [] if v and v not in dict(orgs)]
        n["options"], n["control"] = orgs + current, "select"


def _walk(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in nodes:
        out.append(n)
        out += _walk(n.get("children") or [])
        for inst in n.get("instances") or []:
            out += _walk(inst)
    return out


async def _author_name(web: Web, request: Request, session: Session, qr: dict[str, Any], unit: str) -> str | None:
    """Who last set this answer (the answer-author extension), by name, with their organisation."""
    item = _find(qr.get("item") or [], unit)
    if item is None:
        return None
    author = af.author_of(item)
    names = []
    for key in ("author", "organisation"):
        ref = (author.get(key) or {}).get("reference") if isinstance(author.get(key), dict) else None
        if ref:
            a = await web.api(request, session, "GET", ref)
            names.append(_name(a.body) if a.ok else "")
    names = [n for n in names if n]
    return f"{names[0]} ({names[1]})" if len(names) == 2 else (names[0] if names else None)


def _find(items: list[dict[str, Any]], link: str) -> dict[str, Any] | None:
    for it in items:
        if it.get("linkId") == link:
            return it
        found = _find(it.get("item") or [], link)
        if found is not None:
            return found
    return None


def af_plain(text: str) -> str:
    from service.web.plain import outcome_words

    return outcome_words(text)


def _index(q: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for it in items:
            out[it.get("linkId", "")] = it
            walk(it.get("item") or [])

    walk(q.get("item") or [])
    return out


def _raw_text(it: dict[str, Any], raw: str) -> str:
    for o in it.get("answerOption") or []:
        if af.option_key(o) == raw:
            return af.answer_text(o)
    return {"true": "Yes", "false": "No"}.get(raw, raw) if it.get("type") == "boolean" else raw
