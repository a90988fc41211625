"""The pages' router: each kind of user's pages, a plain 'page not found', and the static assets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from service.web import assessment, careplan, ig, person, professional, signin
from service.web.assets import StaticAssets
from service.web.core import PageError, Web


def mount(app: Any) -> None:
    web = Web(app.state.services)
    router = APIRouter(include_in_schema=False)
    signin.routes(web, router)
    person.routes(web, router)
    professional.routes(web, router)
    assessment.routes(web, router)
    careplan.routes(web, router)
    ig.routes(web, router)

    @router.get("/")
    async def root() -> Response:
        return RedirectResponse("/web/", status_code=303)

    @router.api_route("/web/{rest:path}", methods=["GET", "POST"])
    async def not_found(request: Request, rest: str) -> Response:
        return web.error(request, PageError(404, "There is no page at this address. Check the address or go back "
                                                 "to the start.", "Page not found"))

    app.mount("/web/static", StaticAssets(), name="web-static")
    app.include_router(router)
    app.state.web = web
