"""The web pages: a SMART app of this service itself (sign-in through the embedded authorisation server, every
read and write a FHIR request through service.api.pipeline), server-rendered with the NHS.UK frontend.

`install(app)` mounts them under /web (and the static assets under /web/static).
"""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    from fastapi import APIRouter, Request
    from fastapi.responses import RedirectResponse

    from service.web import ig, person, professional, signin
    from service.web.assets import StaticAssets
    from service.web.core import PageError, Web

    web = Web(app.state.services)
    router = APIRouter(include_in_schema=False)
    signin.routes(web, router)
    person.routes(web, router)
    professional.routes(web, router)
    ig.routes(web, router)

    @router.get("/")
    async def root() -> Any:
        return RedirectResponse("/web/", status_code=303)

    @router.api_route("/web/{rest:path}", methods=["GET", "POST"])
    async def not_found(request: Request, rest: str) -> Any:
        return web.error(request, PageError(404, "There is no page at this address. Check the address or go back "
                                                 "to the start.", "Page not found"))

    app.mount("/web/static", StaticAssets(), name="web-static")
    app.include_router(router)
    app.state.web = web
