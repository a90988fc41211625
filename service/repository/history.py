"""History of an instance, a type or the whole system, through the repository: a Bundle of type history,
newest first, paged by keyset.

The access policy runs as SQL on the version rows first (each carries its primary owner: only people the
caller may see, data that is nobody's, and what the caller's organisation wrote), then per version as the
backstop; a page is filled from what the caller may see, so its `next` link and cursor are those of a version
they may see, never of a hidden one, and no empty page is handed out while hidden versions remain.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import exists, literal, or_, select, union
from sqlalchemy.sql.elements import ColumnElement

from service.clock import fhir_instant, from_datetime, http_date, now_us
from service.fhir.outcome import bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.fhir.types import RESOURCE_TYPES
from service.ownership import is_patient_data
from service.repository import errors
from service.storage.store import row_to_stored
from service.storage.tables import resource_version as V

DEFAULT_COUNT = 20
MAX_COUNT = 1000
BATCH = 100


def parse_instant(value: str, name: str) -> int:
    text = value.strip().replace(" ", "+")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}={value!r} is not a valid instant (e.g. 2024-01-31T09:00:00Z)") from None
    return from_datetime(dt)


_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_period(value: str, name: str) -> tuple[int, int]:
    """The period a FHIR dateTime names, inclusive microseconds: a year (`2024`), a month (`2024-05`) or a day
    (`2024-05-31`) in UTC, or an instant (`2024-05-31T09:00:00Z`: that moment)."""
    text = value.strip()
    m = _PARTIAL.match(text)
    if m is None:
        at = parse_instant(value, name)
        return at, at
    year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        low = datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        raise bad_request(f"{name}={value!r} is not a valid date") from None
    if m.group(3):
        high = low + timedelta(days=1)
    elif m.group(2):
        high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    else:
        high = datetime(year + 1, 1, 1, tzinfo=UTC)
    return from_datetime(low), from_datetime(high) - 1


def current_during(low: int, high: int) -> ColumnElement[bool]:
    """Version rows that were the current version at some moment of [low, high]: written by `high`, and not
    replaced by a later version at or before `low` (https://hl7.org/fhir/R4/http.html#history, `_at`)."""
    later = V.alias("later")
    replaced = exists(select(literal(1)).select_from(later).where(
        later.c.res_type == V.c.res_type, later.c.res_id == V.c.res_id, later.c.version > V.c.version,
        later.c.last_updated <= low))
    return (V.c.last_updated <= high) & ~replaced


def _bounded(text: str) -> bool:
    """A whole number that fits the database's 64-bit integers."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) < 2 ** 63


def parse_count(value: str | None) -> int:
    if value is None:
        return DEFAULT_COUNT
    if not (value.isascii() and value.isdigit()):
        raise bad_request(f"_count={value[:100]!r} must be a non-negative whole number")
    digits = value.lstrip("0") or "0"
    return MAX_COUNT if len(digits) > 6 else min(int(digits), MAX_COUNT)


def entry(stored: Stored, base: str) -> dict[str, Any]:
    url = f"{stored.res_type}/{stored.res_id}"
    e: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if stored.content is not None and not stored.deleted:
        e["resource"] = orjson.Fragment(stored.content)
    method = "DELETE" if stored.deleted else ("POST" if stored.method == "POST" else "PUT")
    if stored.method == "PATCH":
        method = "PATCH"
    e["request"] = {"method": method, "url": url if method != "POST" else stored.res_type}
    e["response"] = {"status": "204" if stored.deleted else ("201" if stored.version == 1 else "200"),
                     "etag": stored.etag, "lastModified": fhir_instant(stored.last_updated)}
    return e


def _prefilter(repo: Any, rtype: str | None) -> ColumnElement[bool] | None:
    """The policy as SQL on version rows: a superset of what the per-version decision lets through."""
    access = repo._access
    p = repo.principal
    if access.unrestricted or p is None:
        return None
    if rtype is None:
        types = sorted(t for t in RESOURCE_TYPES if repo.may("history-type", t))
        type_cond: ColumnElement[bool] | None = V.c.res_type.in_(types)
    else:
        type_cond = None
    if rtype is not None and not is_patient_data(rtype):
        return type_cond
    nobody = V.c.patient_id.is_(None)
    if p.kind in ("patient", "relatedPerson"):
        cond = or_(nobody, V.c.patient_id == (p.patient or ""))
    elif p.kind == "ig" or access.record.btg_request or any(x in ("HRESCH", "HOPERAT") for x in repo.ctx.purpose_of_use):
        cond = None
    else:
        from service.access.context import org_keys
        from service.policy import break_glass, relationships
        from service.policy.facts import actor_keys
        from service.policy.sqlfilter import authored_by

        people = relationships.related_patients(actor_keys(p), access.now)
        granted = break_glass.active_patients(repo._conn, p.subject, access.now) if p.kind == "practitioner" else set()
        if granted:
            people = union(people, *[select(literal(g)) for g in sorted(granted)])
        own = org_keys(p)
        mine = _current_authored(authored_by(own, None)) if own else None
        cond = or_(nobody, V.c.patient_id.in_(people), *([mine] if mine is not None else []))
    if type_cond is None:
        return cond
    return type_cond if cond is None else type_cond & cond


def _current_authored(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    """`sqlfilter.authored_by` is a condition on `resource` rows; correlate it with the version's resource."""
    from service.storage.tables import resource as R

    return exists(select(literal(1)).select_from(R).where(R.c.res_type == V.c.res_type, R.c.res_id == V.c.res_id,
                                                          cond))


def _seen(repo: Any, r: Stored) -> Stored | None:
    """The version as the caller may see it, or None; a deletion only when they could see what was deleted
    (its previous version), so history never reveals that a hidden resource existed."""
    if r.deleted:
        if r.version <= 1:
            return None
        prev = repo._store.version(repo._conn, r.res_type, r.res_id, r.version - 1)
        ok = prev is not None and prev.content is not None and repo._verdict("read", prev).visible
        return r if ok else None
    v = repo._verdict("read", r)
    return repo._served(r, v) if v.visible else None


def history(repo: Any, req: FhirRequest, rtype: str | None = None, rid: str | None = None) -> FhirResponse:
    interaction = "history-instance" if rid else ("history-type" if rtype else "history-system")
    repo.require(interaction, rtype)
    if rtype and rid:
        current, _ = repo._visible_current("read", rtype, rid)
        if current is None:
            raise errors.missing(rtype, rid)
    since_raw, at_raw = req.param("_since"), req.param("_at")
    since = parse_period(since_raw, "_since")[0] if since_raw else None
    at = parse_period(at_raw, "_at") if at_raw else None
    count = parse_count(req.param("_count"))
    cursor_raw = req.param("_cursor")
    before = None
    if cursor_raw:
        parts = cursor_raw.split(".", 1)
        if len(parts) != 2 or not all(_bounded(x) for x in parts):
            raise bad_request(f"_cursor={cursor_raw[:100]!r} is not a valid paging cursor")
        before = (int(parts[0]), int(parts[1]))
    # A snapshot bound keeps pages stable while new versions arrive: links carry the first page's time.
    raw_snapshot = req.param("_snapshot")
    if raw_snapshot is not None and not _bounded(raw_snapshot):
        raise bad_request(f"_snapshot={raw_snapshot[:100]!r} is not a valid paging snapshot")
    snapshot = int(raw_snapshot) if raw_snapshot is not None else now_us()
    stmt = repo._store.history_statement(rtype=rtype, rid=rid, since=since, at_or_before=snapshot)
    if at is not None:  # the version current at that moment (or during that period), per resource
        stmt = stmt.where(current_during(*at))
    pre = None if rid else _prefilter(repo, rtype)
    if pre is not None:
        stmt = stmt.where(pre)
    shown: list[Stored] = []
    more = False
    after = before
    while count > 0:
        page = stmt
        if after is not None:
            lu, seq = after
            page = page.where(or_(V.c.last_updated < lu, (V.c.last_updated == lu) & (V.c.seq < seq)))
        rows = [row_to_stored(r) for r in repo._conn.execute(page.limit(BATCH))]
        for r in rows:
            seen = _seen(repo, r)
            if seen is not None:
                if len(shown) == count:
                    more = True
                    break
                shown.append(seen)
                repo.record.touch(r.owners, r.res_type)
        if more or len(rows) < BATCH:
            break
        after = (rows[-1].last_updated, rows[-1].seq)
    path = "/".join(p for p in (rtype, rid) if p) + ("/_history" if rtype else "_history")
    link_base = f"{repo.base}/{path}"
    keep = [(k, v) for k, v in req.params if k in ("_since", "_at")]
    keep.append(("_count", str(count)))
    keep.append(("_snapshot", str(snapshot)))
    links = [{"relation": "self", "url": link_base + "?" + urlencode(
        keep + ([("_cursor", cursor_raw)] if cursor_raw else []))}]
    links.append({"relation": "first", "url": link_base + "?" + urlencode(keep)})
    if more and shown:
        last = shown[-1]
        links.append({"relation": "next", "url": link_base + "?" + urlencode(
            keep + [("_cursor", f"{last.last_updated}.{last.seq}")])})
    # (No OperationOutcome entry as in a searchset: every entry of a history Bundle must carry request and
    # response, bdl-3/4. A _count above the maximum is clamped; the self link shows the _count applied.)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "link": links}
    if shown:
        bundle["entry"] = [entry(r, repo.base) for r in shown]
    return FhirResponse(200, orjson.dumps(bundle), {"Last-Modified": http_date(now_us())})
