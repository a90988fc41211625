"""Sign in (authorization code + PKCE against our own /auth endpoints), the callback, sign out (revocation)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.web.core import PageError, Web, log, page, remote
from service.web.session import FLOW_COOKIE, FLOW_MAX_AGE, SESSION_COOKIE, SESSION_MAX_AGE, Session, pkce_pair
from service.web.smart import SignInError

HOME = {"patient": "/web/my-care-plan", "relatedPerson": "/web/my-care-plan", "practitioner": "/web/caseload",
        "ig": "/web/ig/break-glass", "admin": "/web/caseload"}


def _safe_next(target: str | None) -> str | None:
    if target and target.startswith("/web/") and "//" not in target and "\\" not in target:
        return target
    return None


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/web/sign-in")
    async def sign_in(request: Request) -> Response:
        try:
            await run_in_threadpool(web.smart.ensure_registered)
        except Exception:  # noqa: BLE001 (logged, answered with a plain page)
            log.exception("the web pages' client could not be registered")
            return web.error(request, PageError(503, "Signing in is not available right now. Please try again "
                                                     "later."))
        state = secrets.token_urlsafe(24)
        verifier, challenge = pkce_pair()
        flow = web.sealer.seal({"state": state, "verifier": verifier,
                                "next": _safe_next(request.query_params.get("next"))})
        resp = RedirectResponse(web.smart.authorize_url(state, challenge), status_code=303,
                                headers={"Cache-Control": "no-store"})
        resp.set_cookie(FLOW_COOKIE, flow, **web.sealer.cookie_args(FLOW_MAX_AGE, path="/web/"))
        return resp

    @router.get("/web/callback")
    async def callback(request: Request) -> Response:
        flow = web.sealer.open(request.cookies.get(FLOW_COOKIE), FLOW_MAX_AGE)
        q = request.query_params
        if q.get("error"):
            return web.error(request, PageError(400, "You did not finish signing in. You can try again.",
                                                "You are not signed in"))
        if flow is None or not q.get("state") or not secrets.compare_digest(str(flow.get("state")), q["state"]):
            return web.error(request, PageError(400, "The sign-in took too long or was started somewhere else. "
                                                     "Please sign in again.", "You are not signed in"))
        try:
            session: Session = await run_in_threadpool(web.smart.exchange, q.get("code", ""), flow["verifier"],
                                                       remote(request), request.headers.get("user-agent"))
        except SignInError as err:
            return web.error(request, PageError(400, str(err), "You are not signed in"))
        resp = RedirectResponse(flow.get("next") or HOME.get(session.kind, "/web/"), status_code=303,
                                headers={"Cache-Control": "no-store"})
        resp.delete_cookie(FLOW_COOKIE, path="/web/")
        resp.set_cookie(SESSION_COOKIE, web.sealer.session_cookie(session), **web.sealer.cookie_args(SESSION_MAX_AGE))
        return resp

    async def sign_out(request: Request, session: Session) -> Response:
        await web.form(request, session)
        await run_in_threadpool(web.smart.revoke, session, remote(request))
        resp = web.render(request, "signed_out.html", None)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    router.add_api_route("/web/sign-out", page(web, sign_out), methods=["POST"])

    @router.get("/web/")
    @router.get("/web")
    async def start(request: Request) -> Response:
        session = await web.session(request)
        if session is None:
            return web.render(request, "start.html", None)
        return web.redirect(request, HOME.get(session.kind, "/web/"), session)
