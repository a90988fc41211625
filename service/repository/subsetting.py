"""`_summary` and `_elements` for a read or vread, as searches apply them (service/search/render.py): the
resource trimmed and marked SUBSETTED in meta.tag. Handlers reach it here, through the repository package."""

from __future__ import annotations

from typing import Any

import orjson

from service.fhir.decimals import redumps
from service.fhir.outcome import bad_request
from service.search.render import apply_summary, check_elements, check_summary


def subset(content: bytes, params: list[tuple[str, str]]) -> bytes:
    """The stored bytes, or the subset `_summary`/`_elements` ask for (400 for a value that is not one)."""
    summary: str | None = None
    elements: list[str] | None = None
    for key, value in params:
        if key == "_summary":
            if value == "count":
                raise bad_request("_summary=count applies to searches (a count of matches); a read returns one "
                                  "resource: use _summary=true, text, data or false")
            summary = check_summary(value)
        elif key == "_elements":
            elements = check_elements(value)
    if summary is None and elements is None:
        return content
    res: dict[str, Any] = orjson.loads(content)
    return redumps(apply_summary(res, summary, elements), content)  # (the decimals as stored)
