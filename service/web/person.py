"""The person's pages (the patient, and a carer where granted): my care plan, what matters to me and my own
goals, who has looked at my record, my sharing choices. Every read and write is a FHIR call through the pipeline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.web.api import Answer, entries
from service.web.core import PageError, Web, api_failure, page
from service.web.session import Session

CS_NEED = "https://sharedcare.example.org/fhir/CodeSystem/care-plan-need"
REVIEW_DATE = "https://sharedcare.example.org/fhir/StructureDefinition/careplan-review-date"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CARE_COORDINATOR = "768820003"
OWN_KINDS = {"what-matters": "What matters to me", "outcomes-wanted": "What I want to achieve"}
PERSON = ("patient", "relatedPerson")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Kinds of information a person may keep from other organisations (security labels the policy understands)
INFO_KINDS = {"PSY": "Mental health", "SEX": "Sexual health", "ETH": "Drug and alcohol use", "HIV": "HIV"}


def _ref_id(ref: Any, rtype: str) -> str | None:
    text = (ref or {}).get("reference") if isinstance(ref, dict) else None
    if isinstance(text, str) and text.startswith(f"{rtype}/"):
        return text.split("/", 1)[1]
    return None


def _name(res: dict[str, Any] | None) -> str:
    if not res:
        return ""
    if isinstance(res.get("name"), str):
        return res["name"]
    for n in res.get("name") or []:
        if isinstance(n, dict):
            if n.get("text"):
                return str(n["text"])
            return " ".join([*n.get("given", []), n.get("family", "")]).strip()
    return ""


def _ext(res: dict[str, Any], url: str, key: str) -> Any:
    for e in res.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == url:
            return e.get(key)
    return None


def _category(goal: dict[str, Any]) -> str | None:
    for c in goal.get("category") or []:
        for cd in c.get("coding") or []:
            if cd.get("system") == CS_NEED:
                return cd.get("code")
    return None


def goal_words(goal: dict[str, Any]) -> str:
    """A need's goal in plain English ("Managing and maintaining nutrition: needs met" reads as "Getting the
    help you need with managing and maintaining nutrition")."""
    text = str((goal.get("description") or {}).get("text") or "")
    if text.endswith(": needs met"):
        need = text.removesuffix(": needs met")
        return f"Getting the help you need with {need[:1].lower()}{need[1:]}"
    return text


def own_goal(goal: dict[str, Any], patient: str) -> bool:
    return _ref_id(goal.get("expressedBy"), "Patient") == patient or _category(goal) in OWN_KINDS


class Lookup:
    """Names of the people and organisations a page mentions, read through the API once each."""

    def __init__(self, web: Web, request: Request, session: Session) -> None:
        self.web, self.request, self.session = web, request, session
        self.cache: dict[str, dict[str, Any] | None] = {}

    async def get(self, ref: str | None) -> dict[str, Any] | None:
        if not ref or ref.count("/") != 1:
            return None
        if ref not in self.cache:
            a = await self.web.api(self.request, self.session, "GET", ref)
            self.cache[ref] = a.body if a.ok and isinstance(a.body, dict) else None
        return self.cache[ref]

    async def name(self, ref: dict[str, Any] | None) -> str:
        if not isinstance(ref, dict):
            return ""
        return _name(await self.get(ref.get("reference"))) or str(ref.get("display") or "")


def _patient_of(session: Session) -> str:
    if not session.patient:
        raise PageError(403, "Your account is not linked to a person's record.", "You cannot use this page")
    return session.patient


async def care_plan_view(web: Web, request: Request, session: Session, patient: str) -> dict[str, Any]:
    """Everything 'My care plan' shows, from the person's CarePlans, Goals and care team."""
    found = await web.api(request, session, "GET", "CarePlan",
                          [("subject", f"Patient/{patient}"), ("status", "active,draft"), ("_count", "20")])
    if not found.ok:
        raise api_failure(found, "this care plan")
    plans = sorted(entries(found.body), key=lambda p: (p.get("status") != "active", _neg((p.get("meta") or {}).get("lastUpdated"))))
    plan = plans[0] if plans else None
    goals_ans = await web.api(request, session, "GET", "Goal", [("subject", f"Patient/{patient}"), ("_count", "100")])
    goals = entries(goals_ans.body) if goals_ans.ok else []
    goals = [g for g in goals if g.get("lifecycleStatus") not in ("cancelled", "entered-in-error", "rejected")]
    own = sorted((g for g in goals if own_goal(g, patient)),
                 key=lambda g: (_category(g) != "what-matters", str(g.get("startDate") or ""), str(g.get("id"))))
    lookup = Lookup(web, request, session)
    view: dict[str, Any] = {"plan": plan, "own_goals": own, "what_matters": [g for g in own if
                                                                            _category(g) == "what-matters"],
                            "activities": [], "plan_goals": [], "coordinator": None, "review": None}
    if plan is None:
        return view
    view["review"] = _ext(plan, REVIEW_DATE, "valueDate")
    linked = {(g.get("reference") or "").split("/", 1)[-1] for g in plan.get("goal") or [] if isinstance(g, dict)}
    view["plan_goals"] = [{**g, "words": goal_words(g)} for g in goals
                          if g.get("id") in linked and not own_goal(g, patient)]
    for act in plan.get("activity") or []:
        d = act.get("detail") or {}
        who = [await lookup.name(p) for p in d.get("performer") or []]
        period = d.get("scheduledPeriod") or {}
        view["activities"].append({"what": d.get("description") or (d.get("code") or {}).get("text") or "",
                                   "about": (d.get("code") or {}).get("text"), "who": ", ".join(w for w in who if w),
                                   "by": period.get("end"), "status": d.get("status")})
    author = plan.get("author") or {}
    coord = await lookup.get(author.get("reference"))
    if coord is not None:
        telecom = list(coord.get("telecom") or [])
        org_name = ""
        if coord.get("resourceType") == "Practitioner":
            roles = await web.api(request, session, "GET", "PractitionerRole",
                                  [("practitioner", f"Practitioner/{coord['id']}"), ("_count", "5")])
            for role in entries(roles.body) if roles.ok else []:
                telecom += role.get("telecom") or []
                org = await lookup.get((role.get("organization") or {}).get("reference"))
                if org:
                    org_name = org_name or _name(org)
                    telecom += org.get("telecom") or []
        view["coordinator"] = {"name": _name(coord), "organisation": org_name,
                               "contact": [t for t in telecom if isinstance(t, dict) and t.get("value")]}
    return view


def _neg(text: Any) -> str:
    # newest first: sort on the inverted characters of the ISO time
    return "".join(chr(0x10FFFF - ord(c)) for c in (text or ""))


def routes(web: Web, router: APIRouter) -> None:
    async def my_care_plan(request: Request, session: Session) -> Response:
        patient = _patient_of(session)
        view = await care_plan_view(web, request, session, patient)
        return web.render(request, "person/care_plan.html", session, **view)

    async def what_matters(request: Request, session: Session) -> Response:
        patient = _patient_of(session)
        view = await care_plan_view(web, request, session, patient)
        saved = request.query_params.get("saved") == "1"
        return web.render(request, "person/what_matters.html", session, own_goals=view["own_goals"], saved=saved,
                          kinds=OWN_KINDS, errors={}, values={})

    async def what_matters_post(request: Request, session: Session) -> Response:
        patient = _patient_of(session)
        form = await web.form(request, session)
        text = str(form.get("text", "")).strip()
        kind = str(form.get("kind", "what-matters"))
        goal_id = str(form.get("goal", "")).strip()
        if kind not in OWN_KINDS:
            kind = "what-matters"
        errors = {}
        if not text:
            errors["text"] = "Write what matters to you, or what you want to achieve, in your own words"
        elif len(text) > 2000:
            errors["text"] = "Write 2,000 characters or fewer"
        if errors:
            view = await care_plan_view(web, request, session, patient)
            return web.render(request, "person/what_matters.html", session, status=400, own_goals=view["own_goals"],
                              saved=False, kinds=OWN_KINDS, errors=errors, values={"text": text, "kind": kind})
        if goal_id and not ID.match(goal_id):
            raise PageError(400, "The form could not be read. Please go back and try again.")
        if goal_id:
            current = await web.api(request, session, "GET", f"Goal/{goal_id}")
            if not current.ok:
                raise api_failure(current, "this goal")
            goal = current.body
            if form.get("action") == "remove":
                goal["lifecycleStatus"] = "cancelled"
            else:
                goal["description"] = {"text": text}
            version = (goal.get("meta") or {}).get("versionId")
            saved = await web.api(request, session, "PUT", f"Goal/{goal_id}", body=goal,
                                  headers={"If-Match": f'W/"{version}"'} if version else None)
        else:
            goal = {"resourceType": "Goal", "lifecycleStatus": "active",
                    "category": [{"coding": [{"system": CS_NEED, "code": kind, "display": OWN_KINDS[kind]}]}],
                    "description": {"text": text}, "subject": {"reference": f"Patient/{patient}"},
                    "expressedBy": {"reference": session.fhir_user or f"Patient/{patient}"},
                    "startDate": datetime.now(UTC).date().isoformat()}
            saved = await web.api(request, session, "POST", "Goal", body=goal)
        if not saved.ok:
            raise api_failure(saved, "what you wrote")
        return web.redirect(request, "/web/what-matters?saved=1", session)

    async def access_log(request: Request, session: Session) -> Response:
        patient = _patient_of(session)
        a = await web.api(request, session, "GET", f"Patient/{patient}/$access-log", [("_count", "200")])
        if not a.ok:
            raise api_failure(a, "who has looked at your record")
        rows = []
        for p in (a.body or {}).get("parameter") or []:
            if p.get("name") != "access":
                continue
            parts: dict[str, Any] = {}
            purposes = []
            for part in p.get("part") or []:
                value = next((v for k, v in part.items() if k.startswith("value")), None)
                if part.get("name") == "purpose":
                    purposes.append(value)
                else:
                    parts[part.get("name")] = value
            parts["purposes"] = purposes
            who_ref = next((x.get("valueReference", {}).get("reference") for x in p.get("part") or []
                            if x.get("name") == "whoReference"), None)
            if session.fhir_user and who_ref == session.fhir_user:
                continue  # her own visits are not "someone looking at her record"
            rows.append(parts)
        return web.render(request, "person/access_log.html", session, rows=rows)

    async def sharing(request: Request, session: Session) -> Response:
        patient = _patient_of(session)
        return await _sharing_page(web, request, session, patient, status=200, errors={},
                                   saved=request.query_params.get("saved"))

    async def sharing_post(request: Request, session: Session) -> Response:
        patient = _patient_of(session)
        form = await web.form(request, session)
        action = form.get("action")
        if action == "withdraw":
            cid = str(form.get("consent", ""))
            if not ID.match(cid):
                raise PageError(400, "The form could not be read. Please go back and try again.")
            current = await web.api(request, session, "GET", f"Consent/{cid}")
            if not current.ok:
                raise api_failure(current, "this sharing choice")
            body = current.body
            body["status"] = "inactive"
            version = (body.get("meta") or {}).get("versionId")
            done = await web.api(request, session, "PUT", f"Consent/{cid}", body=body,
                                 headers={"If-Match": f'W/"{version}"'} if version else None)
            if not done.ok:
                raise api_failure(done, "your sharing choice")
            return web.redirect(request, "/web/sharing?saved=withdrawn", session)
        scope = form.get("scope")
        errors: dict[str, str] = {}
        deny: dict[str, Any] = {"type": "deny"}
        if scope == "everyone":
            provision: dict[str, Any] = {"type": "deny"}
        elif scope == "organisation":
            org = str(form.get("organisation", ""))
            if not org.startswith("Organization/"):
                errors["organisation"] = "Choose the organisation you do not want to share with"
            deny["actor"] = [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-"
                                                             "ParticipationType", "code": "PRCP"}]},
                              "reference": {"reference": org}}]
            provision = {"type": "permit", "provision": [deny]}
        elif scope == "kind":
            kinds = [k for k in form.get("kind[]", []) if k in INFO_KINDS]
            if not kinds:
                errors["kind"] = "Choose at least one kind of information"
            deny["securityLabel"] = [{"system": ACT_CODE, "code": k} for k in kinds]
            provision = {"type": "permit", "provision": [deny]}
        else:
            errors["scope"] = "Choose who you do not want your record shared with"
            provision = {}
        if errors:
            return await _sharing_page(web, request, session, patient, status=400, errors=errors, saved=None)
        consent = {"resourceType": "Consent", "status": "active",
                   "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
                   "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                             "display": "Patient Consent"}]}],
                   "patient": {"reference": f"Patient/{patient}"},
                   "dateTime": datetime.now(UTC).isoformat(timespec="seconds"),
                   "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT"}]}, "provision": provision}
        done = await web.api(request, session, "POST", "Consent", body=consent)
        if not done.ok:
            raise api_failure(done, "your sharing choice")
        return web.redirect(request, "/web/sharing?saved=recorded", session)

    for path, fn, methods in (("/web/my-care-plan", my_care_plan, ["GET"]), ("/web/what-matters", what_matters, ["GET"]),
                              ("/web/what-matters", what_matters_post, ["POST"]),
                              ("/web/who-has-looked", access_log, ["GET"]), ("/web/sharing", sharing, ["GET"]),
                              ("/web/sharing", sharing_post, ["POST"])):
        kinds = ("patient",) if path in ("/web/what-matters", "/web/who-has-looked") else PERSON
        router.add_api_route(path, page(web, fn, kinds), methods=methods)


def describe_consent(c: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A sharing choice in plain words."""
    prov = c.get("provision") or {}
    rule = next((cd.get("code") for cd in (c.get("policyRule") or {}).get("coding") or []), None)
    scope = next((cd.get("code") for cd in (c.get("scope") or {}).get("coding") or []), None)
    text = "A sharing choice"
    objection = False
    if scope == "patient-privacy" and prov.get("type") == "deny" and not prov.get("provision") and not prov.get(
            "actor") and not prov.get("securityLabel"):
        text, objection = "Do not share my record with other organisations caring for me", True
    elif scope == "patient-privacy":
        for sub in prov.get("provision") or []:
            if sub.get("type") != "deny":
                continue
            objection = True
            if sub.get("actor"):
                orgs = [names.get((a.get("reference") or {}).get("reference", ""), "an organisation")
                        for a in sub["actor"]]
                text = "Do not share my record with " + ", ".join(orgs)
            elif sub.get("securityLabel"):
                kinds = [INFO_KINDS.get(lb.get("code"), lb.get("code")) for lb in sub["securityLabel"]]
                text = "Do not share information about " + ", ".join(k.lower() for k in kinds) + \
                       " with other organisations"
        if not objection and rule == "OPTIN" and prov.get("type") == "permit":
            actors = [names.get((a.get("reference") or {}).get("reference", ""), "someone")
                      for a in prov.get("actor") or []]
            text = "Let " + (", ".join(actors) or "someone") + " see my record"
    elif scope == "research":
        text = "A choice about research"
    return {"id": c.get("id"), "text": text, "objection": objection, "when": c.get("dateTime"),
            "status": c.get("status")}


async def _sharing_page(web: Web, request: Request, session: Session, patient: str, *, status: int,
                        errors: dict[str, str], saved: str | None) -> Response:
    found: Answer = await web.api(request, session, "GET", "Consent",
                                  [("patient", f"Patient/{patient}"), ("status", "active"), ("_count", "50")])
    if not found.ok:
        raise api_failure(found, "your sharing choices")
    consents = entries(found.body)
    orgs_ans = await web.api(request, session, "GET", "Organization", [("_count", "100"), ("_sort", "name")])
    orgs = [(f"Organization/{o['id']}", _name(o)) for o in entries(orgs_ans.body)] if orgs_ans.ok else []
    names = dict(orgs)
    lookup = Lookup(web, request, session)
    for c in consents:
        for a in _actors(c.get("provision") or {}):
            ref = (a.get("reference") or {}).get("reference", "")
            if ref and ref not in names:
                names[ref] = await lookup.name(a.get("reference")) or ref
    choices = [describe_consent(c, names) for c in consents]
    return web.render(request, "person/sharing.html", session, status=status, choices=choices, orgs=orgs,
                      kinds=INFO_KINDS, errors=errors, saved=saved, can_record=session.kind == "patient")


def _actors(prov: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(prov.get("actor") or [])
    for sub in prov.get("provision") or []:
        out += _actors(sub)
    return out
