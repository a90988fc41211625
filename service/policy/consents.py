"""Loading a person's Consent resources for the decision point: one query per patient (`patient_facts`, with
their care relationship and grant) or one per search for many patients (`with_shapes`), parsed once per
stored version (parsing is a pure function of the stored bytes, so the
memo is safe to keep in any number of processes)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from consent import ParsedConsent, parse_consent
from service.db import Prepared
from service.search.tables import sp_compartment as C
from service.search.tables import sp_token as T
from service.storage.tables import resource as R
from service.storage.tables import resource_version as V


@lru_cache(maxsize=8192)
def _parse(content: str | bytes, base: str) -> ParsedConsent:
    return parse_consent(orjson.loads(content), base_urls=(base,))


@lru_cache(maxsize=8192)
def shape(content: str | bytes, alone: bool) -> int:
    """What a decision in request mode depends on, apart from the person: the consent without its id, meta,
    patient and narrative (and, when it is the person's only consent, its date, which only orders consents).
    People whose consents have the same shapes get the same obligations (the policy decides once)."""
    doc = orjson.loads(content)
    for key in ("id", "meta", "patient", "text", "performer", "organization", "sourceAttachment",
                "sourceReference", "extension") + (("dateTime",) if alone else ()):
        doc.pop(key, None)
    return hash(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def _active() -> Any:
    return R.c.res_id.in_(select(T.c.res_id).where(T.c.res_type == "Consent", T.c.param == "status",
                                                   T.c.code == "active"))


_BY_VERSION: OrderedDict[tuple[str, int, str], tuple[ParsedConsent, tuple[int, int]]] = OrderedDict()
_MAX_CACHED = 20_000


def _remember(key: tuple[str, int, str], value: tuple[ParsedConsent, tuple[int, int]]) -> None:
    _BY_VERSION[key] = value
    if len(_BY_VERSION) > _MAX_CACHED:
        _BY_VERSION.popitem(last=False)


def with_shapes(conn: Connection, patients: Any, base: str) -> dict[str, list[tuple[ParsedConsent, tuple[int, int]]]]:
    """Consents by patient id, each with its shapes (alone, among others; see `shape`). One query for the
    (patient, id, version) triples; the stored bytes are fetched only for versions not parsed before in this
    process (a stored version never changes, so the memo is safe with any number of processes)."""
    stmt = select(C.c.patient_id, R.c.res_id, R.c.version).select_from(
        C.join(R, and_(R.c.res_type == C.c.res_type, R.c.res_id == C.c.res_id))).where(
        C.c.res_type == "Consent", R.c.deleted.is_(False))
    if patients is not None:
        stmt = stmt.where(C.c.patient_id.in_(patients))
    return _with_shapes(conn, conn.execute(stmt).all(), base)


def _with_shapes(conn: Connection, rows: list[Any], base: str
                 ) -> dict[str, list[tuple[ParsedConsent, tuple[int, int]]]]:
    """(patient, consent id, version) rows as `with_shapes` gives them."""
    missing = sorted({(rid, ver) for _, rid, ver in rows if (rid, ver, base) not in _BY_VERSION})
    wanted = set(missing)
    for i in range(0, len(missing), 500):
        chunk = [rid for rid, _ in missing[i:i + 500]]
        # the exact versions listed (from the version table: the current row may have moved on meanwhile)
        for rid, ver, content in conn.execute(select(V.c.res_id, V.c.version, V.c.content).where(
                V.c.res_type == "Consent", V.c.res_id.in_(chunk))):
            if (rid, ver) in wanted and content is not None:
                _remember((rid, ver, base), (_parse(content, base), (shape(content, True), shape(content, False))))
    out: dict[str, list[tuple[ParsedConsent, tuple[int, int]]]] = {}
    for pid, rid, ver in rows:
        found = _BY_VERSION.get((rid, ver, base))
        if found is None:  # never skip a consent: read that exact version on its own
            content = conn.execute(select(V.c.content).where(V.c.res_type == "Consent", V.c.res_id == rid,
                                                             V.c.version == ver)).scalar_one()
            found = (_parse(content, base), (shape(content, True), shape(content, False)))
        if found[0].status == "active":
            out.setdefault(pid, []).append(found)
    return out


def _search_facts_statement(_dialect: str) -> Any:
    """PostgreSQL, one round trip for a practitioner's or system's search: the patients the caller holds an open
    break-glass grant for ('g', patient) and the (patient, consent id, version) of every consent of the people
    in the caller's care relationships or grants ('c')."""
    from sqlalchemy import String, bindparam, literal, null, union, union_all
    from sqlalchemy.dialects.postgresql import ARRAY

    from service.policy.relationships import related_to_any
    from service.policy.tables import break_glass as BG

    now = bindparam("now", type_=BG.c.expires_us.type)
    open_grant = and_(BG.c.subject == bindparam("subject"), BG.c.expires_us > now)
    scope = union(related_to_any(bindparam("parties", type_=ARRAY(String)), now),
                  select(BG.c.patient_id).where(open_grant))
    consents = select(literal("c").label("k"), C.c.patient_id, R.c.res_id, R.c.version).select_from(
        C.join(R, and_(R.c.res_type == C.c.res_type, R.c.res_id == C.c.res_id))).where(
        C.c.res_type == "Consent", R.c.deleted.is_(False), C.c.patient_id.in_(scope))
    return union_all(consents, select(literal("g").label("k"), BG.c.patient_id, null(), null()).where(open_grant))


_SEARCH_FACTS = Prepared(_search_facts_statement)


def search_facts(conn: Connection, parties: Iterable[str], subject: str, now_us: int, base: str
                 ) -> tuple[set[str], dict[str, list[tuple[ParsedConsent, tuple[int, int]]]]]:
    """PostgreSQL: (the patients `subject` holds an open grant for, `with_shapes` of the people in the care
    relationships of `parties` or in those grants), in one statement (`_search_facts_statement`)."""
    granted: set[str] = set()
    rows = []
    for k, pid, rid, ver in _SEARCH_FACTS.rows(conn, {"parties": sorted(parties), "subject": subject,
                                                      "now": now_us}):
        if k == "g":
            granted.add(pid)
        else:
            rows.append((pid, rid, ver))
    return granted, _with_shapes(conn, rows, base)


def _facts_parts(pid: Any, width: int, dialect: str | None = None) -> list[Any]:
    """The facts about patient `pid` (a bind parameter or a scalar subquery) as union members of `width`
    columns: ('c', consent content), ('r', care relationship), ('g', open grant id). On PostgreSQL the caller's
    keys are one array parameter (`= ANY`), so the statement compiles once."""
    from sqlalchemy import bindparam, exists, func, literal, null, or_

    from service.policy.tables import break_glass as BG
    from service.policy.tables import care_relationship as CR

    now = bindparam("now")
    pad = [null() for _ in range(width - 2)]
    consents = select(literal("c").label("k"), *pad, R.c.content.label("v")).where(
        R.c.res_type == "Consent", R.c.deleted.is_(False), _active(),
        R.c.res_id.in_(select(C.c.res_id).where(C.c.res_type == "Consent", C.c.patient_id == pid)))
    parties = CR.c.party == func.any(bindparam("parties")) if dialect == "postgresql" \
        else CR.c.party.in_(bindparam("parties", expanding=True))
    related = select(literal("r").label("k"), *pad, null().label("v")).where(exists().where(
        CR.c.patient_id == pid, parties,
        or_(CR.c.start_us.is_(None), CR.c.start_us <= now), or_(CR.c.end_us.is_(None), CR.c.end_us > now)))
    grant = select(literal("g").label("k"), *pad, BG.c.id.label("v")).where(
        BG.c.subject == bindparam("subject"), BG.c.patient_id == pid, BG.c.expires_us > now)
    return [consents, related, grant]


def _facts_statement(dialect: str | None = None) -> Any:
    """One round trip for everything a decision about one patient needs: their active consents ('c'),
    whether the caller has a current care relationship with them ('r') and the caller's open break-glass
    grant for them ('g'), and whether the Patient is stored, undeleted ('p': a write's reference to it needs no
    lookup of its own). Built once; the parameters are bound per call."""
    from sqlalchemy import bindparam, exists, literal, null, union_all

    pid = bindparam("pid")
    present = select(literal("p").label("k"), null().label("v")).where(exists().where(
        R.c.res_type == "Patient", R.c.res_id == pid, R.c.deleted.is_(False)))  # (for a write's reference check)
    return union_all(*_facts_parts(pid, 2, dialect), present)


def row_and_facts_statement(dialect: str | None = None) -> Any:
    """One round trip for a read: the current row of (:rtype, :rid) ('x': version, last_updated, deleted,
    owners, content) and the facts about its primary owner, so a resource the caller may not see costs
    exactly what a missing one does."""
    from sqlalchemy import bindparam, literal, union_all

    rtype, rid = bindparam("rtype"), bindparam("rid")
    row = select(literal("x").label("k"), R.c.version, R.c.last_updated, R.c.deleted, R.c.owners,
                 R.c.content.label("v")).where(R.c.res_type == rtype, R.c.res_id == rid)
    owner = select(R.c.patient_id).where(R.c.res_type == rtype, R.c.res_id == rid).scalar_subquery()
    return union_all(row, *_facts_parts(owner, 6, dialect))


_FACTS = None
_PG_FACTS = Prepared(_facts_statement)
_ROW_AND_FACTS = Prepared(row_and_facts_statement)
_SQLITE_ROW_AND_FACTS = row_and_facts_statement()


def read_row_and_facts(conn: Connection, rtype: str, rid: str, base: str, params: dict[str, Any]
                       ) -> tuple[tuple[Any, ...] | None, list[ParsedConsent], bool, str | None]:
    """(row, consents, related, grant) from `row_and_facts_statement`; row is (version, last_updated,
    deleted, owners, content) or None."""
    row = None
    found: list[ParsedConsent] = []
    related, grant = False, None
    args = {"rtype": rtype, "rid": rid, **params}
    rows = _ROW_AND_FACTS.rows(conn, args) if conn.dialect.name == "postgresql" else conn.execute(
        _SQLITE_ROW_AND_FACTS, args).all()  # (SQLite: the caller's keys are an expanding IN list)
    for k, version, lu, deleted, owners, value in rows:
        if k == "x":
            row = (version, lu, deleted, owners, value)
        elif k == "c":
            found.append(_parse(value, base))
        elif k == "r":
            related = True
        elif grant is None:
            grant = value
    return row, found, related, grant


def patient_facts(conn: Connection, patient_id: str, base: str, *, parties: Iterable[str], subject: str | None,
                  now_us: int) -> tuple[list[ParsedConsent], bool, str | None, bool]:
    """(active consents, care relationship?, open grant id, does the Patient exist, undeleted?) for one patient,
    in one query."""
    global _FACTS
    if _FACTS is None:
        _FACTS = _facts_statement()
    found: list[ParsedConsent] = []
    related, grant, present = False, None, False
    args = {"pid": patient_id, "now": now_us, "parties": sorted(parties) or [""], "subject": subject or ""}
    rows = _PG_FACTS.rows(conn, args) if conn.dialect.name == "postgresql" else conn.execute(_FACTS, args)
    for kind, value in rows:
        if kind == "c":
            found.append(_parse(value, base))
        elif kind == "r":
            related = True
        elif kind == "p":
            present = True
        elif grant is None:
            grant = value
    return found, related, grant, present
