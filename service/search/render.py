"""_summary and _elements: trimming resources in a searchset (marked SUBSETTED, as the spec asks)."""

from __future__ import annotations

import re
from typing import Any

from service.fhir.outcome import bad_request
from service.search.params import summary_elements

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
ALWAYS = {"resourceType", "id", "meta"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def check_summary(value: str) -> str | None:
    if value not in ("true", "false", "text", "data", "count"):
        raise bad_request(f"_summary must be true, false, text, data or count, not {value!r}")
    return None if value == "false" else value


def check_elements(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    out = []
    for n in names:
        top = n.split(".", 1)[0]
        if "." in n and top[:1].isupper():  # Type.element form
            top = n.split(".")[1]
        if not _NAME.match(top):
            raise bad_request(f"_elements: {n!r} is not an element name")
        out.append(top)
    return out


def _keep(key: str, names: set[str]) -> bool:
    if key in names:
        return True
    for n in names:  # choice types: value -> valueQuantity
        if key.startswith(n) and len(key) > len(n) and key[len(n)].isupper():
            return True
    return False


def apply_summary(res: dict[str, Any], summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    rtype = res.get("resourceType", "")
    if elements is not None:
        names = ALWAYS | set(elements)
        out = {k: v for k, v in res.items() if _keep(k, names)}
    elif summary == "true":
        names = ALWAYS | set(summary_elements().get(rtype, list(res)))
        out = {k: v for k, v in res.items() if k in names}
    elif summary == "text":
        out = {k: v for k, v in res.items() if k in ALWAYS | {"text"}}
    elif summary == "data":
        out = {k: v for k, v in res.items() if k != "text"}
    else:
        return res
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out
