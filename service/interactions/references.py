"""References inside Bundles: urn:uuid / fullUrl rewriting and conditional references.

https://hl7.org/fhir/R4/http.html#trules and #cond-update: in a transaction every string that equals
an entry's fullUrl (Reference.reference, but also uri/url values such as `valueUri` in extensions)
becomes the assigned `Type/id`; a `reference` of the form `Type?search` resolves to the one resource
the search matches among what the caller may see (`Repository.resolve_reference`; 412 otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from service.fhir.outcome import bad_request
from service.fhir.types import RESOURCE_TYPES

CONDITIONAL_RE = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")


def is_conditional(ref: str) -> bool:
    m = CONDITIONAL_RE.match(ref)
    return bool(m and m.group(1) in RESOURCE_TYPES)


def rewrite(value: Any, mapping: dict[str, str], resolve: Callable[[str], str] | None = None,
            *, forbid_urn: bool = True, path: str = "") -> Any:
    """A copy of `value` with fullUrls replaced by their `Type/id` and conditional references resolved.

    `resolve(ref)` turns a conditional reference into `Type/id` (or raises). A `reference` that is an
    unknown `urn:uuid:` can never resolve on this server, so it is refused when `forbid_urn` is set.
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if k == "reference" and isinstance(v, str):
                out[k] = _reference(v, mapping, resolve, forbid_urn, sub)
            elif k == "div" and isinstance(v, str):
                out[k] = v  # narrative XHTML is left as written
            else:
                out[k] = rewrite(v, mapping, resolve, forbid_urn=forbid_urn, path=sub)
        return out
    if isinstance(value, list):
        return [rewrite(v, mapping, resolve, forbid_urn=forbid_urn, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and value in mapping:
        return mapping[value]
    return value


def _reference(ref: str, mapping: dict[str, str], resolve: Callable[[str], str] | None, forbid_urn: bool,
               path: str) -> str:
    if ref in mapping:
        return mapping[ref]
    if resolve is not None and is_conditional(ref):
        return resolve(ref)
    if forbid_urn and ref.startswith("urn:uuid:"):
        raise bad_request(f"{path}: the reference {ref!r} names no entry's fullUrl in this Bundle, so it cannot "
                          "be resolved", code="invalid")
    return ref
