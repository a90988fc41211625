"""The pages' static assets: our own (service/web/static/) and the NHS.UK frontend built into static/build/ by
`make web-assets` (never fetched at run time). Cached by browsers for a day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
BUILD = STATIC / "build"


class StaticAssets(StaticFiles):
    def __init__(self) -> None:
        super().__init__(directory=STATIC, check_dir=False)

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        resp = super().file_response(*args, **kwargs)
        resp.headers["Cache-Control"] = "public, max-age=86400"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
