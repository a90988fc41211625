"""What every page shares: templates, security headers, the session (with its refresh), CSRF, plain errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from service.web import plain
from service.web.api import Answer, call
from service.web.session import SESSION_COOKIE, SESSION_MAX_AGE, Sealer, Session, csrf_ok, now
from service.web.smart import SmartClient

log = logging.getLogger("sharedcare.web")
HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"}
MAX_FORM_BYTES = 256 * 1024

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
templates.globals.update(plain=plain)
templates.filters.update(when=plain.when, day=plain.day)


class PageError(Exception):
    """A page that cannot be shown; `message` is in plain words."""

    def __init__(self, status: int, message: str, title: str = "Sorry, there is a problem") -> None:
        super().__init__(message)
        self.status, self.message, self.title = status, message, title


class Web:
    """The pages' services: the SMART client, the cookie sealer, and the calls through the pipeline."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.smart = SmartClient(services)
        self.sealer = Sealer(services.settings)

    # -- rendering -------------------------------------------------------------------------------------------
    def render(self, request: Request, template: str, session: Session | None, status: int = 200, **ctx: Any
               ) -> HTMLResponse:
        html = templates.get_template(template).render(session=session, path=request.url.path, **ctx)
        resp = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if session is not None and getattr(request.state, "session_changed", False):
            resp.set_cookie(SESSION_COOKIE, self.sealer.session_cookie(session),
                            **self.sealer.cookie_args(SESSION_MAX_AGE))
        return resp

    def redirect(self, request: Request, to: str, session: Session | None = None) -> Response:
        resp = RedirectResponse(to, status_code=303, headers={"Cache-Control": "no-store"})
        if session is not None and getattr(request.state, "session_changed", False):
            resp.set_cookie(SESSION_COOKIE, self.sealer.session_cookie(session),
                            **self.sealer.cookie_args(SESSION_MAX_AGE))
        return resp

    def error(self, request: Request, err: PageError, session: Session | None = None) -> HTMLResponse:
        return self.render(request, "error.html", session, status=err.status, title=err.title, message=err.message)

    # -- the session -----------------------------------------------------------------------------------------
    async def session(self, request: Request) -> Session | None:
        s = self.sealer.session(request.cookies.get(SESSION_COOKIE))
        if s is None:
            return None
        if s.expires_at - now() < 30:  # refresh the access token shortly before it expires
            s = await run_in_threadpool(self.smart.refresh, s, remote(request), request.headers.get("user-agent"))
            if s is None:
                return None
            request.state.session_changed = True
        return s

    async def multi_form(self, request: Request, session: Session) -> dict[str, list[str]]:
        """The posted form with every field as a list (checkboxes, repeated names), its CSRF token checked."""
        data = await self.form(request, session, multi=True)
        return data

    async def form(self, request: Request, session: Session, multi: bool = False) -> dict[str, Any]:
        """The posted form (urlencoded), its CSRF token checked; repeated fields as lists under `name[]`."""
        media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise PageError(400, "The form could not be read. Please go back and try again.")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise PageError(413, "What you sent is too long. Please shorten it and try again.")
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "The form could not be read. Please go back and try again.") from None
        data: dict[str, Any] = {}
        for k, v in pairs:
            if multi or k.endswith("[]"):
                data.setdefault(k, []).append(v)
            else:
                data[k] = v
        token = data.get("csrf")
        if not csrf_ok(session, token[0] if isinstance(token, list) and token else token):
            raise PageError(403, "This form has expired or did not come from this service. Please go back, "
                                 "reload the page and try again.")
        return data

    async def api(self, request: Request, session: Session, method: str, path: str,
                  params: list[tuple[str, str]] | None = None, body: Any = None,
                  headers: dict[str, str] | None = None) -> Answer:
        return await call(self.services, session, method, path, params, body, headers, remote(request),
                          request.headers.get("user-agent"))


def remote(request: Request) -> str:
    return request.client.host if request.client else "unknown"


Handler = Callable[[Request, Session], Awaitable[Response]]


def page(web: Web, fn: Handler, kinds: tuple[str, ...] | None = None) -> Callable[[Request], Awaitable[Response]]:
    """A signed-in page: no session -> the sign-in; wrong kind of user -> a plain refusal; any failure -> a plain
    error page (never a stack trace)."""

    async def endpoint(request: Request) -> Response:
        session = None
        try:
            session = await web.session(request)
            if session is None:
                if request.method == "GET":
                    return web.redirect(request, "/web/sign-in?next=" + request.url.path)
                raise PageError(401, "You have been signed out. Please sign in again.", "You are signed out")
            if kinds is not None and session.kind not in kinds:
                raise PageError(403, "This page is not for your kind of account.", "You cannot use this page")
            return await fn(request, session)
        except PageError as err:
            return web.error(request, err, session)
        except Exception:
            log.exception("page error on %s %s", request.method, request.url.path)
            return web.error(request, PageError(500, "Something went wrong on our side and has been logged. "
                                                     "Please try again later."), session)

    return endpoint


def api_failure(answer: Answer, what: str) -> PageError:
    """An API refusal or failure, in plain words."""
    s = answer.status
    if s == 401:
        return PageError(401, "You have been signed out. Please sign in again.", "You are signed out")
    if s == 403 and "suppressed" in answer.issue_codes():
        return PageError(403, f"The person has asked that {what} is not shared with your organisation.",
                         "This information is not shared with you")
    if s == 403:
        return PageError(403, f"You do not have permission to see or change {what}.", "You cannot do this")
    if s == 404:
        return PageError(404, f"We could not find {what}, or you do not have a care relationship that lets "
                              "you see it.", "Not found")
    if s == 409 or s == 412:
        return PageError(409, f"Someone else changed {what} at the same time. Reload the page and try again.",
                         "Someone else made a change")
    if s in (400, 422):
        return PageError(s, f"We could not save {what}: {plain.outcome_words(answer.problem())}",
                         "There is a problem with what you entered")
    if s == 429:
        return PageError(429, "Too many requests. Wait a minute and try again.")
    return PageError(503 if s >= 500 else s, "The service is not available right now. Please try again later.")
