"""History for an instance, a type and the whole system: Bundle type history, newest first, paged."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import orjson

from service.fhir.outcome import bad_request
from service.interactions.crud import _check_id
from service.interactions.request import FhirRequest, FhirResponse
from service.interactions.session import Session
from service.storage.clock import fhir_instant, from_datetime, http_date, now_us
from service.storage.store import Stored

DEFAULT_COUNT = 20
MAX_COUNT = 1000


def parse_instant(value: str, name: str) -> int:
    text = value.strip().replace(" ", "+")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}={value!r} is not a valid instant (e.g. 2024-01-31T09:00:00Z)") from None
    return from_datetime(dt)


def parse_count(value: str | None) -> tuple[int, str | None]:
    if value is None:
        return DEFAULT_COUNT, None
    if not value.isdigit():
        raise bad_request(f"_count={value!r} must be a non-negative whole number")
    n = int(value)
    if n > MAX_COUNT:
        return MAX_COUNT, f"_count={n} was reduced to the maximum of {MAX_COUNT}"
    return n, None


def entry(stored: Stored, base: str) -> dict:
    url = f"{stored.res_type}/{stored.res_id}"
    e: dict = {"fullUrl": f"{base}/{url}"}
    if stored.content is not None:
        e["resource"] = orjson.Fragment(stored.content)
    method = "DELETE" if stored.deleted else ("POST" if stored.method == "POST" else "PUT")
    if stored.method == "PATCH":
        method = "PATCH"
    e["request"] = {"method": method, "url": url if method != "POST" else stored.res_type}
    e["response"] = {
        "status": "204" if stored.deleted else ("201" if stored.version == 1 else "200"),
        "etag": stored.etag,
        "lastModified": fhir_instant(stored.last_updated),
    }
    return e


def _may_see(session: Session, r: Stored) -> bool:
    """A version the caller may see; a deletion only when they could see what was deleted (its previous
    version), so history never reveals that a hidden resource existed."""
    if r.content is not None:
        return session.guard.can_see(session.ctx, r.res_type, r.json())
    if r.version <= 1:
        return False
    prev = session.store.history(session.conn, rtype=r.res_type, rid=r.res_id, count=1,
                                 at_or_before=r.last_updated - 1)
    return bool(prev) and prev[0].content is not None and \
        session.guard.can_see(session.ctx, r.res_type, prev[0].json())


def history(req: FhirRequest, session: Session, rtype: str | None = None, rid: str | None = None) -> FhirResponse:
    interaction = "history-instance" if rid else ("history-type" if rtype else "history-system")
    session.guard.check_type(session.ctx, interaction, rtype)
    if rtype and rid:
        _check_id(rtype, rid)
        if (cur := session.store.current(session.conn, rtype, rid)) is None or not _may_see(session, cur):
            # unseen = unknown: no leak (a deletion counts as seen when what it deleted could be seen)
            from service.fhir.outcome import not_found
            raise not_found(f"{rtype}/{rid} is not known")
    since = parse_instant(req.param("_since"), "_since") if req.param("_since") else None
    at = parse_instant(req.param("_at"), "_at") if req.param("_at") else None
    count, _ = parse_count(req.param("_count"))
    cursor_raw = req.param("_cursor")
    before = None
    if cursor_raw:
        try:
            lu, seq = (int(x) for x in cursor_raw.split(".", 1))
            before = (lu, seq)
        except ValueError:
            raise bad_request(f"_cursor={cursor_raw!r} is not a valid paging cursor") from None
    # A snapshot bound keeps pages stable while new versions arrive: links carry the first page's time.
    snapshot = int(req.param("_snapshot")) if (req.param("_snapshot") or "").isdigit() else now_us()
    upper = min(snapshot, at) if at is not None else snapshot
    rows = session.store.history(session.conn, rtype=rtype, rid=rid, since=since, before=before,
                                 count=count + 1, at_or_before=upper)
    visible_rows = [r for r in rows[:count] if _may_see(session, r)]
    path = "/".join(p for p in (rtype, rid) if p) + ("/_history" if rtype else "_history")
    link_base = f"{session.base}/{path}"
    keep = [(k, v) for k, v in req.params if k in ("_since", "_at")]
    keep.append(("_count", str(count)))
    keep.append(("_snapshot", str(snapshot)))
    links = [{"relation": "self", "url": link_base + "?" + urlencode(
        keep + ([("_cursor", cursor_raw)] if cursor_raw else []))}]
    links.append({"relation": "first", "url": link_base + "?" + urlencode(keep)})
    if len(rows) > count and rows:
        last = rows[count - 1] if count > 0 else None
        if last is not None:
            links.append({"relation": "next", "url": link_base + "?" + urlencode(
                keep + [("_cursor", f"{last.last_updated}.{last.seq}")])})
    # A _count above the maximum is clamped; the self link shows the _count applied. (No OperationOutcome
    # entry as in a searchset: every entry of a history Bundle must carry request and response, bdl-3/4.)
    bundle: dict = {"resourceType": "Bundle", "type": "history", "link": links,
                    "entry": [entry(r, session.base) for r in visible_rows]}
    if not bundle["entry"]:
        del bundle["entry"]
    headers = {"Last-Modified": http_date(now_us())}
    return FhirResponse(200, orjson.dumps(bundle), headers)
