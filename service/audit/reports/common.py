"""Shared by the information-governance operations ($break-glass-queue, $break-glass-review and the
reports): who may use them, the reporting window, and names for references in one query per page.

Only the IG lead (`Principal.kind == "ig"` or service role `ig-lead`) and administrators (kind or role
`admin`) may use them; everyone else gets 403 before any storage access. The token must also allow
searching AuditEvent (these tools read the audit trail and what derives from it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from service.access.context import Principal
from service.audit import codes as c
from service.clock import fhir_instant, now_us
from service.fhir.outcome import OperationOutcomeError, forbidden
from service.repository import Repository
from service.search.tables import sp_token
from service.search.values import date_range
from service.workflows.params import Params

IG_KINDS = frozenset({"ig", "admin"})
IG_ROLES = frozenset({"ig-lead", "admin"})
DAY_US = 86_400 * 1_000_000
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 366


def is_ig(p: Principal | None) -> bool:
    return p is not None and (p.kind in IG_KINDS or bool(IG_ROLES & p.roles))


def require_ig(repo: Repository, operation: str) -> Principal:
    """403 unless the caller is the IG lead or an administrator (checked before any storage access)."""
    p = repo.ctx.principal
    if p is None:
        raise OperationOutcomeError(401, "login", f"${operation} needs an authenticated caller")
    if not is_ig(p):
        raise forbidden(f"${operation} is for the information-governance lead and administrators only")
    repo.require("search-type", "AuditEvent")
    return p


def param_error(name: str, text: str, *, status: int = 400, code: str = "invalid") -> OperationOutcomeError:
    return OperationOutcomeError(status, code, text, expression=(f"Parameters.parameter.where(name='{name}')",))


def window(params: Params, now: int | None = None) -> tuple[int, int]:
    """The reporting window [start, end) in microseconds from `start`/`end` (FHIR date or dateTime; a
    date covers its whole day). Default: the last 30 days; at most 366 days."""
    now = now if now is not None else now_us()
    bounds: dict[str, tuple[int, int]] = {}
    for name in ("start", "end"):
        text = params.string(name)
        if text is None:
            continue
        rng = date_range(text)
        if rng is None:
            raise param_error(name, f"Parameter '{name}' must be a FHIR date or dateTime (e.g. 2026-01-31 or "
                                    f"2026-01-31T09:00:00Z), not {text!r}")
        bounds[name] = rng
    end = bounds["end"][1] + 1 if "end" in bounds else now
    start = bounds["start"][0] if "start" in bounds else end - DEFAULT_WINDOW_DAYS * DAY_US
    if start >= end:
        raise param_error("start", "Parameter 'start' must be before 'end'")
    if end - start > MAX_WINDOW_DAYS * DAY_US:
        raise param_error("start", f"The reporting window is at most {MAX_WINDOW_DAYS} days; narrow 'start'/'end'",
                          code="too-costly")
    return start, end


def window_parts(start: int, end: int) -> list[dict[str, Any]]:
    return [{"name": "start", "valueInstant": fhir_instant(start)},
            {"name": "end", "valueInstant": fhir_instant(end)}]


def display_name(res: dict[str, Any] | None) -> str | None:
    """A person's or organisation's name for display (HumanName text or parts, or a plain name)."""
    if not res:
        return None
    name = res.get("name")
    if isinstance(name, str):
        return name
    for n in name or []:
        if not isinstance(n, dict):
            continue
        if n.get("text"):
            return str(n["text"])
        parts = [*n.get("prefix", []), *n.get("given", []), n.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return None


def names(repo: Repository, refs: Iterable[str]) -> dict[str, str]:
    """`Type/id` -> display name, for every resolvable reference, in one query."""
    keys = sorted({tuple(r.split("/", 1)) for r in refs if isinstance(r, str) and r.count("/") == 1})
    found = repo._store.read_many(repo._conn, keys)  # type: ignore[arg-type]
    out = {}
    for (t, i), stored in found.items():
        name = display_name(stored.json())
        if name:
            out[f"{t}/{i}"] = name
    return out


def organisations(repo: Repository, refs: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
    """`Organization/id` -> (name, ODS code), in one query."""
    keys = sorted({("Organization", r.split("/", 1)[1]) for r in refs if isinstance(r, str)
                   and r.startswith("Organization/") and r.count("/") == 1})
    out: dict[str, tuple[str | None, str | None]] = {}
    for (_t, i), stored in repo._store.read_many(repo._conn, keys).items():
        res = stored.json()
        ods = next((str(x.get("value")) for x in res.get("identifier") or [] if isinstance(x, dict)
                    and x.get("system") == c.ODS and x.get("value")), None)
        out[f"Organization/{i}"] = (display_name(res), ods)
    return out


def organisations_by_ods(repo: Repository, codes: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """ODS code -> (Organization reference, name), in two queries (index, then the records)."""
    wanted = sorted({x for x in codes if x})
    if not wanted:
        return {}
    rows = repo._conn.execute(select(sp_token.c.code, sp_token.c.res_id).where(
        sp_token.c.res_type == "Organization", sp_token.c.param == "identifier", sp_token.c.system == c.ODS,
        sp_token.c.code.in_(wanted)).order_by(sp_token.c.code, sp_token.c.res_id))
    ref_of: dict[str, str] = {}
    for code, rid in rows:
        ref_of.setdefault(code, f"Organization/{rid}")
    named = names(repo, ref_of.values())
    return {code: (ref, named.get(ref)) for code, ref in ref_of.items()}


def org_parts(ref: str | None, ods: str | None, name: str | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if ref:
        parts.append({"name": "reference", "valueReference": {"reference": ref, **({"display": name} if name else {})}})
    if ods:
        parts.append({"name": "odsCode", "valueIdentifier": {"system": c.ODS, "value": ods}})
    if name:
        parts.append({"name": "name", "valueString": name})
    return parts

