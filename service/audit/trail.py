"""AuditEvent as a FHIR resource type, served from the audit log (inside the door: the repository hands every
AuditEvent interaction here after its type check).

- read / vread (`AuditEvent/<seq>`, version 1 only), instance and type history, search by `patient`, `agent`,
  `entity`, `date`, `outcome`, `purpose`, `action`, `type`, `subtype`, `_id`, `_lastUpdated`, with `_count`,
  `_sort` (`date`, `-date`; newest first by default), `_total`, `_summary=count` and signed keyset paging;
- create: an AuditEvent a partner system sends (IHE ATNA), kept as sent, with the time we received it and its
  source; it belongs to the people it names (service.ownership) but is never an access by us.
AuditEvents are not in system-level searches or history (they are the audit trail's, not the record's).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import and_, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from service import ownership
from service.audit import codes as c
from service.audit.params import CAPABILITY
from service.audit.render import SOURCE, render
from service.audit.rows import partner_row
from service.audit.tables import audit_also, audit_log
from service.clock import http_date, now_us
from service.fhir.outcome import Issue, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.repository import errors

A = audit_log
DEFAULT_COUNT, MAX_COUNT = 20, 1000
PARAMS = {p["name"]: p["type"] for p in CAPABILITY}
CONTROL = ("_count", "_sort", "_total", "_summary", "_cursor", "_format", "_pretty", "_include",
           "_totalMethod")  # (fhirpy's count() sends it)
INCLUDES = {"AuditEvent:patient": "patient", "AuditEvent:entity:Patient": "patient"}
TYPE_KINDS = {"rest": ("rest",), "110114": ("login", "token"), "policy-decision": ("decision",),
              "break-glass": ("break-glass",)}


def _stored(row: Any, base: str) -> Stored:
    patients = (row.patient_id,) if row.patient_id else ()
    return Stored("AuditEvent", str(row.seq), 1, row.recorded, False, orjson.dumps(render(row, base)), "POST",
                  owners=patients)


def _seq(rid: str) -> int | None:
    return int(rid) if rid.isdigit() and len(rid) < 19 else None


def _require(repo: Any, interaction: str) -> None:
    """The type check (IG leads and administrators read the trail; partner systems send to it), noted as the
    basis of the access."""
    repo.require(interaction, "AuditEvent")
    repo.record.note("policy: permit AuditEvent: the audit trail, for IG leads and administrators (rule:audit-trail)"
                     if interaction != "create" else
                     "policy: permit AuditEvent: an audit record a partner system sends (rule:audit-trail)")


def read(repo: Any, rid: str, interaction: str = "read") -> Stored:
    _require(repo, interaction)
    seq = _seq(rid)
    row = repo._conn.execute(select(A).where(A.c.seq == seq)).first() if seq is not None else None
    if row is None:
        raise errors.missing("AuditEvent", rid)
    repo.record.saw(f"AuditEvent/{rid}/_history/1")
    return _stored(row, repo.base)


def vread(repo: Any, rid: str, vid: str) -> Stored:
    stored = read(repo, rid, "vread")
    if vid != "1":
        raise errors.missing_version("AuditEvent", rid, vid)
    return stored


def create(repo: Any, event: dict[str, Any]) -> Stored:
    """A partner system's AuditEvent, in the request's transaction."""
    from service.fhir.validation import validate_resource

    _require(repo, "create")
    event = {k: v for k, v in event.items() if k not in ("id", "meta")}
    validate_resource({"resourceType": "AuditEvent", **event}, expected_type="AuditEvent")
    patients = ownership.owners("AuditEvent", event, repo._store.resolver(repo._conn))
    row = partner_row(repo.ctx, event, patients)
    values = row.values()
    seq = repo._conn.execute(A.insert().returning(A.c.seq), values).scalar_one()
    if len(patients) > 1:
        repo._conn.execute(audit_also.insert(), [{"patient_id": p, "seq": seq} for p in patients[1:]])
    stored = repo._conn.execute(select(A).where(A.c.seq == seq)).one()
    return _stored(stored, repo.base)


# -- search ----------------------------------------------------------------------------------------------
def _patient(pid: str) -> ColumnElement[bool]:
    return or_(A.c.patient_id == pid, A.c.seq.in_(select(audit_also.c.seq).where(audit_also.c.patient_id == pid)))


def _ref(value: str, rtype: str | None = None) -> str:
    ref = value.split("/_history/", 1)[0]
    if rtype and "/" not in ref:
        ref = f"{rtype}/{ref}"
    return ref


def _token(value: str) -> tuple[str | None, str]:
    if "|" in value:
        system, _, code = value.partition("|")
        return system or None, code
    return None, value


def _one(name: str, value: str, now: int) -> ColumnElement[bool]:
    from service.search.query import _date_value

    if name == "patient":
        return _patient(_ref(value, "Patient").split("/", 1)[-1])
    if name == "agent":  # the user, the client, or the organisation they acted for (BALP's agents)
        ref = _ref(value)
        return or_(A.c.agent.in_([ref, f"user:{ref}", f"client:{ref}"]), A.c.organisation == ref)
    if name == "entity":
        ref = _ref(value)
        cond = or_(A.c.target == ref, A.c.target.like(f"{ref}/_history/%"))
        return or_(cond, _patient(ref.split("/", 1)[1])) if ref.startswith("Patient/") else cond
    if name in ("date", "_lastUpdated"):
        return _date_value(A.c.recorded, A.c.recorded, name, value, now)
    if name in ("_tag", "_profile", "_security"):
        return false()  # the audit log's events carry no tags, profiles or security labels
    if name == "_source":
        return and_(A.c.kind == "partner", A.c.client == value.removeprefix(SOURCE)) \
            if value.startswith(SOURCE) else false()
    system, code = _token(value)
    if name == "altid":
        return A.c.altid == code
    if name == "_id":
        seq = _seq(code)
        return A.c.seq == seq if seq is not None else false()
    if name == "outcome":
        return A.c.outcome == int(code) if code.isdigit() else false()
    if name == "action":
        return A.c.action == code
    if name == "purpose":
        if system not in (None, c.ACT_REASON):
            return false()
        return or_(A.c.purpose == code, A.c.purpose.like(f"{code},%"), A.c.purpose.like(f"%,{code}"),
                   A.c.purpose.like(f"%,{code},%"))
    if name == "type":
        kinds = TYPE_KINDS.get(code)
        return A.c.kind.in_(kinds) if kinds else false()
    if name == "subtype":
        if code == "110122":
            return A.c.kind == "login"
        if code == "token-issued":
            return A.c.kind == "token"
        names = [code, f"operation:{code}"] + (["search-compartment"] if code == "search-type" else [])
        return and_(A.c.kind.in_(("rest", "decision", "break-glass")), A.c.interaction.in_(names))
    raise AssertionError(name)


def _chain(repo: Any, key: str, value: str) -> ColumnElement[bool] | None:
    """`patient.name=x`, `patient:Patient.family=x`, `entity:Observation.code=x`, `agent:Practitioner.name=x`:
    through the record's own search (only what the caller may see matches)."""
    head, _, rest = key.partition(".")
    name, _, rtype = head.partition(":")
    if name not in ("patient", "entity", "agent") or not rest or repo is None:
        return None
    rtype = rtype or ("Patient" if name == "patient" else "")
    if not rtype:
        return None
    refs = [f"{rtype}/{s.res_id}" for s in repo.find(rtype, [(rest, value)])]
    if not refs:
        return false()
    return or_(*[_one(name, ref, 0) for ref in refs])


def _conditions(req: FhirRequest, notes: list[Issue], strict: bool, repo: Any = None
                ) -> tuple[list[ColumnElement[bool]], list[Any]]:
    conds: list[ColumnElement[bool]] = []
    applied: list[tuple[str, str]] = []
    now = now_us()
    for key, value in req.params:
        base = key.split(":", 1)[0].split(".", 1)[0]
        if base in CONTROL:
            continue
        if "." in key:
            chained = _chain(repo, key, value)
            if chained is not None:
                conds.append(chained)
                applied.append((key, value))
                continue
        modifier = key.split(":", 1)[1] if ":" in key else None
        if base not in PARAMS or (modifier is not None and not (modifier == "not" and PARAMS[base] == "token")):
            text = f"AuditEvent has no search parameter {key!r} here (searchable: {', '.join(sorted(PARAMS))})"
            if strict:
                raise bad_request(f"Unknown or unsupported search parameter {key!r}: {text}", code="not-supported",
                                  expression=(key,))
            notes.append(Issue("warning", "not-supported", f"Ignored search parameter {key!r}: {text}"))
            continue
        cond = or_(*[_one(base, v, now) for v in value.split(",") if v]) if value else true()
        conds.append(not_(cond) if modifier == "not" else cond)
        applied.append((key, value))
    return conds, applied


def search(repo: Any, req: FhirRequest, path: str = "AuditEvent", extra: ColumnElement[bool] | None = None
           ) -> FhirResponse:
    from service.search import paging
    from service.search.run import check_limits

    _require(repo, "search-type")
    check_limits(req.params)
    notes: list[Issue] = []
    strict = req.prefer.get("handling", "strict").lower() != "lenient"  # (search never silently widens)
    conds, applied = _conditions(req, notes, strict, repo)
    if extra is not None:
        conds.append(extra)
    count, total, summary, ascending, includes = DEFAULT_COUNT, "accurate", None, False, False
    for key, value in req.params:
        if key == "_count":
            if not value.isdigit():
                raise bad_request(f"_count must be a whole number, not {value!r}")
            count = min(int(value), MAX_COUNT)
        elif key == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise bad_request(f"_total must be none, estimate or accurate, not {value!r}")
            total = value
        elif key == "_summary":
            if value not in ("count", "true", "false", "data", "text"):
                raise bad_request(f"_summary must be true, false, text, data or count, not {value!r}")
            summary = value
        elif key == "_include":
            if value not in INCLUDES:
                text = f"AuditEvent includes only {', '.join(INCLUDES)}, not {value!r}"
                if strict:
                    raise bad_request(f"Unknown or unsupported search parameter {key!r}: {text}", code="not-supported")
                notes.append(Issue("warning", "not-supported", f"Ignored _include={value}: {text}"))
                continue
            includes = True
        elif key == "_sort":
            if value not in ("date", "-date", "_lastUpdated", "-_lastUpdated"):
                raise bad_request(f"AuditEvent can be sorted by date or -date, not {value!r}")
            ascending = not value.startswith("-")
        if key in ("_count", "_total", "_summary", "_sort", "_include"):
            applied.append((key, value))
    p = repo.principal
    who = f"{p.kind}:{p.subject}" if p is not None else ""
    cursor = req.param("_cursor")
    after = None
    if cursor is not None:
        _direction, keys = paging.verify(repo.services.search.secret, cursor, path, applied, who)
        after = int(keys[0])
    stmt = select(A).where(*conds)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total != "none" or summary == "count":
        bundle["total"] = repo._conn.execute(select(func.count()).select_from(A).where(*conds)).scalar_one()

    def link(cur: str | None) -> str:
        q = urlencode(applied + ([("_cursor", cur)] if cur else []), safe=":|,/$*")
        return f"{repo.base}/{path}" + (f"?{q}" if q else "")

    links = [{"relation": "self", "url": link(cursor)}, {"relation": "first", "url": link(None)}]
    entries: list[dict[str, Any]] = []
    if summary != "count" and count > 0:
        if after is not None:
            stmt = stmt.where(A.c.seq > after if ascending else A.c.seq < after)
        rows = list(repo._conn.execute(stmt.order_by(A.c.seq.asc() if ascending else A.c.seq.desc()).limit(count + 1)))
        if len(rows) > count:
            rows = rows[:count]
            links.append({"relation": "next", "url": link(paging.sign(repo.services.search.secret, "next",
                                                                      [rows[-1].seq], path, applied, who))})
        entries = [{"fullUrl": f"{repo.base}/AuditEvent/{r.seq}", "resource": render(r, repo.base),
                    "search": {"mode": "match"}} for r in rows]
        if includes:  # the people the events concern, those the caller may see
            people = sorted({("Patient", p) for r in rows for p in _people(r)})
            for s in repo.lookup(people).values():
                entries.append({"fullUrl": f"{repo.base}/Patient/{s.res_id}", "resource": orjson.Fragment(s.content),
                                "search": {"mode": "include"}})
    bundle["link"] = links
    if notes:
        entries.append({"resource": {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in notes]},
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, orjson.dumps(bundle))


def _people(row: Any) -> list[str]:
    found = [row.patient_id] if row.patient_id else []
    return found + [p for p in orjson.loads(row.detail).get("patients") or () if p not in found]


def find(repo: Any, criteria: str | list[tuple[str, str]]) -> list[Stored]:
    """The AuditEvents matching search criteria (a partner's conditional create): strict about parameters."""
    from urllib.parse import parse_qsl

    from service.search.run import check_limits

    repo.require("search-type", "AuditEvent")
    params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True) if isinstance(criteria, str) else list(criteria)
    check_limits(params)
    conds, _ = _conditions(FhirRequest("GET", "AuditEvent", params=params), [], True, repo)
    return [_stored(r, repo.base) for r in repo._conn.execute(select(A).where(*conds).order_by(A.c.seq).limit(1000))]


def compartment(repo: Any, req: FhirRequest, pid: str) -> FhirResponse:
    """`Patient/<id>/AuditEvent`: the AuditEvents about one person."""
    return search(repo, req, f"Patient/{pid}/AuditEvent", _patient(pid))


def history(repo: Any, req: FhirRequest, rid: str | None = None) -> FhirResponse:
    """Type history (newest first, `_count` and `_cursor` paging) and instance history (one version)."""
    interaction = "history-instance" if rid else "history-type"
    _require(repo, interaction)
    raw = req.param("_count")
    if raw is not None and not raw.isdigit():
        raise bad_request(f"_count={raw!r} must be a non-negative whole number")
    count = min(int(raw) if raw is not None else DEFAULT_COUNT, MAX_COUNT)
    stmt = select(A)
    if rid is not None:
        read(repo, rid, interaction)
        stmt = stmt.where(A.c.seq == _seq(rid))
    cursor = req.param("_cursor")
    if cursor:
        if not cursor.isdigit():
            raise bad_request(f"_cursor={cursor!r} is not a valid paging cursor")
        stmt = stmt.where(A.c.seq < int(cursor))
    rows = list(repo._conn.execute(stmt.order_by(A.c.seq.desc()).limit(count + 1)))
    path = f"AuditEvent/{rid}/_history" if rid else "AuditEvent/_history"
    keep = [("_count", str(count))]
    links = [{"relation": "self", "url": f"{repo.base}/{path}?" + urlencode(keep + ([("_cursor", cursor)] if cursor
                                                                                     else []))}]
    if len(rows) > count > 0:
        rows = rows[:count]
        links.append({"relation": "next", "url": f"{repo.base}/{path}?" + urlencode(keep + [("_cursor",
                                                                                             str(rows[-1].seq))])})
    elif count == 0:
        rows = []
    entries = []
    for r in rows:
        event = render(r, repo.base)
        entries.append({"fullUrl": f"{repo.base}/AuditEvent/{r.seq}", "resource": event,
                        "request": {"method": "POST", "url": "AuditEvent"},
                        "response": {"status": "201", "etag": 'W/"1"', "lastModified": event["meta"]["lastUpdated"]}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "link": links}
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, orjson.dumps(bundle), {"Last-Modified": http_date(now_us())})

