"""Who wrote a resource: the server-owned `authoring-organisation` extension.

Every write by a professional or a partner system stamps the writer's organisation (reference and ODS
code) on the resource; an update keeps the organisations that wrote earlier versions, so the extension
lists every organisation that has written the resource, the first author first. Values sent by a client
are replaced (nobody can claim to be another organisation); only administrators (data migration) and
internal tools keep what they send. The consent rule "an objection never hides data from the
organisation that wrote it" and the search filter read this extension (indexed as the custom search
parameter `authoring-organisation`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from service.access.context import RequestContext, org_reference
from service.fhir.stored import Stored
from service.fhir.types import RESOURCE_TYPES

AUTHORED_BY = "https://sharedcare.example.org/fhir/StructureDefinition/authoring-organisation"
SEARCH_PARAM = "authoring-organisation"
NOT_DOMAIN = frozenset({"Bundle", "Binary", "Parameters"})
CTX_KEY = "sharedcare.ctx"


def key_of(ref: Any) -> set[str]:
    out: set[str] = set()
    if not isinstance(ref, dict):
        return out
    text = ref.get("reference")
    if isinstance(text, str) and text:
        parts = text.split("/")
        if "_history" in parts:
            parts = parts[:parts.index("_history")]
        if len(parts) >= 2:
            out.add(f"{parts[-2]}/{parts[-1]}")
    ident = ref.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("system"), str) and isinstance(ident.get("value"), str):
        out.add(f"{ident['system']}|{ident['value']}")
    return out


def authors(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The authoring-organisation references on a resource, in order."""
    return [e["valueReference"] for e in resource.get("extension") or []
            if isinstance(e, dict) and e.get("url") == AUTHORED_BY and isinstance(e.get("valueReference"), dict)]


def author_keys(resource: dict[str, Any]) -> frozenset[str]:
    keys: set[str] = set()
    for ref in authors(resource):
        keys |= key_of(ref)
    return frozenset(keys)


def _same_org(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(key_of(a) & key_of(b))


def stamp(conn: Connection, resource: dict[str, Any], previous: Stored | None) -> None:
    """Store stamper: set the authoring-organisation extension from the writing context (see module doc)."""
    rtype = resource.get("resourceType")
    if rtype in NOT_DOMAIN or rtype not in RESOURCE_TYPES:
        return
    ctx: RequestContext | None = conn.info.get(CTX_KEY)
    if ctx is None or ctx.principal is None or ctx.principal.kind == "admin":
        return  # internal tools and administrators (data migration) keep what they send
    earlier: list[dict[str, Any]] = []
    if previous is not None and previous.content is not None:
        earlier = authors(previous.json())
    mine = org_reference(ctx.principal)
    merged: list[dict[str, Any]] = []
    for ref in [*earlier, *([mine] if mine else [])]:
        if not any(_same_org(ref, m) for m in merged):
            merged.append(ref)
    others = [e for e in resource.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == AUTHORED_BY)]
    ext = others + [{"url": AUTHORED_BY, "valueReference": ref} for ref in merged]
    if ext:
        resource["extension"] = ext
    else:
        resource.pop("extension", None)


def register_search_param() -> None:
    """`authoring-organisation` (reference) on every DomainResource type, read by the policy's SQL filter."""
    from service.search.params import register_custom

    for rtype in sorted(RESOURCE_TYPES - NOT_DOMAIN):
        register_custom(rtype, SEARCH_PARAM, "reference", f"{rtype}.extension('{AUTHORED_BY}').value",
                        targets=("Organization",), definition=AUTHORED_BY,
                        documentation="The organisations that wrote this resource (server-owned extension)")
