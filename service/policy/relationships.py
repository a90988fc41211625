"""Care relationships: who is caring for whom, derived from the record at write time.

A professional (or their organisation) has a legitimate relationship with a patient when:
- they are a member of the patient's active CareTeam (`participant.member`: a Practitioner, a
  PractitionerRole or a whole Organization; with `SHAREDCARE_CARE_TEAM_ACCESS=organisation` also each
  member's `onBehalfOf` organisation and the team's `managingOrganization`), within the team's and the
  participant's period;
- their organisation manages an active EpisodeOfCare for the patient (`managingOrganization`; the
  `careManager` too), within its period;
- their organisation (or they) were sent a referral that is accepted: a ServiceRequest `active` naming
  them as `performer`, or a Task `accepted`, `ready`, `in-progress` or `on-hold` with them as `owner`;
- their organisation is the patient's registered GP (`Patient.generalPractitioner`) or manages the
  patient's record (`Patient.managingOrganization`);
- they are the accountable professional (`author`) of the patient's CarePlan that is draft, active or
  on hold.
The rows live in `care_relationship` (one per patient, party and source resource), replaced in the
same transaction as every write of a source resource, so they never drift from the record;
`sharedcare policy rebuild` recomputes them for existing data.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from service.fhir.stored import Stored
from service.ownership import reference_id
from service.policy.authorship import key_of
from service.policy.config import PolicySettings
from service.policy.tables import care_relationship as CR
from service.search.values import MAX_US, MIN_US, period_range

SOURCES = ("CareTeam", "EpisodeOfCare", "ServiceRequest", "Task", "Patient", "CarePlan")
PLAN_OPEN = frozenset({"draft", "active", "on-hold"})
PARTY_TYPES = ("Organization", "Practitioner", "PractitionerRole")
TASK_ACCEPTED = frozenset({"accepted", "ready", "in-progress", "on-hold"})
GENERATION = "sharedcare.policy.generation"


def _parties(ref: Any) -> set[str]:
    """The keys a Reference names a party by (only people and organisations)."""
    keys = key_of(ref)
    return {k for k in keys if k.split("/", 1)[0] in PARTY_TYPES or "|" in k}


def _window(*periods: Any) -> tuple[int | None, int | None] | None:
    """The intersection of the periods (absent = open); None when it is empty."""
    lo, hi = MIN_US, MAX_US
    for p in periods:
        if isinstance(p, dict):
            rng = period_range(p)
            if rng is not None:
                lo, hi = max(lo, rng[0]), min(hi, rng[1])
    if lo > hi:
        return None
    return (None if lo == MIN_US else lo), (None if hi == MAX_US else hi + 1)


def _rows(rtype: str, rid: str, r: dict[str, Any], settings: PolicySettings) -> list[dict[str, Any]]:
    found: list[tuple[str, str, str, tuple[int | None, int | None] | None]] = []  # patient, party, kind, window

    def add(patient: str | None, refs: Iterable[Any], kind: str, *periods: Any) -> None:
        if not patient:
            return
        window = _window(*periods)
        if window is None:
            return
        for ref in refs:
            for party in _parties(ref):
                found.append((patient, party, kind, window))

    status = r.get("status")
    if rtype == "CareTeam" and status == "active":
        pid = reference_id(r.get("subject"))
        for part in r.get("participant") or []:
            if not isinstance(part, dict):
                continue
            add(pid, [part.get("member")], "care-team", r.get("period"), part.get("period"))
            if settings.organisation_care_teams:
                add(pid, [part.get("onBehalfOf")], "care-team", r.get("period"), part.get("period"))
        if settings.organisation_care_teams:
            add(pid, r.get("managingOrganization") or [], "care-team", r.get("period"))
    elif rtype == "EpisodeOfCare" and status == "active":
        add(reference_id(r.get("patient")), [r.get("managingOrganization"), r.get("careManager")], "episode",
            r.get("period"))
    elif rtype == "ServiceRequest" and status == "active":
        add(reference_id(r.get("subject")), r.get("performer") or [], "referral")
    elif rtype == "Task" and status in TASK_ACCEPTED:
        add(reference_id(r.get("for")), [r.get("owner")], "referral", r.get("executionPeriod"))
    elif rtype == "CarePlan" and status in PLAN_OPEN:
        add(reference_id(r.get("subject")), [r.get("author")], "care-plan", r.get("period"))
    elif rtype == "Patient" and r.get("active") is not False:
        add(rid, r.get("generalPractitioner") or [], "registered-gp")
        add(rid, [r.get("managingOrganization")], "managing-org")
    seen: set[tuple[str, str, str]] = set()
    out = []
    for patient, party, kind, (start, end) in found:
        if (patient, party, kind) in seen:
            continue
        seen.add((patient, party, kind))
        out.append({"patient_id": patient, "party": party[:256], "source_type": rtype, "source_id": rid,
                    "kind": kind, "start_us": start, "end_us": end})
    return out


def bump(conn: Connection) -> None:
    """Tell request-scoped caches on this connection that relationships or consents changed."""
    conn.info[GENERATION] = conn.info.get(GENERATION, 0) + 1


def generation(conn: Connection) -> int:
    return int(conn.info.get(GENERATION, 0))


class Listener:
    """Store write listener: replaces the relationship rows of a written source resource."""

    acts_on = frozenset({*SOURCES, "Consent"})  # (service.storage.store.Store.quiet)

    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings

    def __call__(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        if stored.res_type == "Consent":
            bump(conn)
            return
        if stored.res_type not in SOURCES:
            return
        bump(conn)
        replace(conn, stored.res_type, stored.res_id, None if stored.deleted else resource, self.settings)


def replace(conn: Connection, rtype: str, rid: str, resource: dict[str, Any] | None,
            settings: PolicySettings) -> int:
    conn.execute(delete(CR).where(CR.c.source_type == rtype, CR.c.source_id == rid))
    rows = _rows(rtype, rid, resource, settings) if resource is not None else []
    if rows:
        conn.execute(insert(CR), rows)
    return len(rows)


def _current(at_us: Any) -> ColumnElement[bool]:
    return and_(or_(CR.c.start_us.is_(None), CR.c.start_us <= at_us),
                or_(CR.c.end_us.is_(None), CR.c.end_us > at_us))


def has_relationship(conn: Connection, patient_id: str, parties: frozenset[str], at_us: int) -> bool:
    if not parties:
        return False
    stmt = select(exists().where(CR.c.patient_id == patient_id, CR.c.party.in_(sorted(parties)), _current(at_us)))
    return bool(conn.execute(stmt).scalar())


def related_patients(parties: frozenset[str], at_us: int | None = None, dialect: str | None = None) -> Any:
    """A subquery of the patient ids with a current relationship to any of `parties`: current at `at_us`, or
    (None) when the statement runs, so that the subquery can be built once and kept (service.policy.sqlfilter).
    On PostgreSQL the parties are one array parameter (`= ANY`): the statement's text does not depend on how
    many there are, so it is not rewritten on every execution as an IN list is."""
    if at_us is None:
        return _related_now(parties, dialect)
    return _related(parties, at_us, dialect)


@lru_cache(maxsize=1024)
def _related_now(parties: frozenset[str], dialect: str | None) -> Any:
    """(kept per process: the statement reads the clock when it runs, so one object serves every request)"""
    return _related(parties, None, dialect)


def _related(parties: frozenset[str], at_us: int | None, dialect: str | None) -> Any:
    from sqlalchemy import bindparam

    at: Any = at_us
    if at_us is None:
        from service.clock import now_us

        at = bindparam("relationship_now", callable_=now_us, type_=CR.c.start_us.type)
    if dialect == "postgresql":
        from sqlalchemy import String
        from sqlalchemy.dialects.postgresql import ARRAY

        return related_to_any(bindparam("relationship_parties", sorted(parties), type_=ARRAY(String)), at)
    return select(CR.c.patient_id).where(CR.c.party.in_(sorted(parties)), _current(at))


def related_to_any(parties: Any, at: Any) -> Any:
    """PostgreSQL: the patients with a relationship current at `at` to any party in the array `parties`."""
    from sqlalchemy import func

    return select(CR.c.patient_id).where(CR.c.party == func.any(parties), _current(at))


def rebuild(conn: Connection, settings: PolicySettings, batch: int = 500) -> int:
    """Recompute every relationship from the stored sources (`sharedcare policy rebuild`)."""
    import orjson

    from service.storage.tables import resource as R

    conn.execute(delete(CR))
    total = 0
    for rtype in SOURCES:
        after = ""
        while True:
            page = conn.execute(select(R.c.res_id, R.c.content).where(
                R.c.res_type == rtype, R.c.deleted.is_(False), R.c.res_id > after)
                .order_by(R.c.res_id).limit(batch)).all()
            if not page:
                break
            rows = [row for rid, content in page for row in _rows(rtype, rid, orjson.loads(content), settings)]
            if rows:
                conn.execute(insert(CR), rows)
                total += len(rows)
            after = page[-1][0]
    return total
