"""The web pages: a SMART app of this service itself (sign-in through the embedded authorisation server, every
read and write a FHIR request through service.api.pipeline), server-rendered with the NHS.UK frontend.

`install(app)` mounts them under /web (and the static assets under /web/static).
"""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    from service.web.mount import mount

    mount(app)
