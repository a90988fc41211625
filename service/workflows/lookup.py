"""Finding the workflow's resources: through the search engine, with a scan while it cannot answer.

`find` asks `services.search.find_ids` with standard R4 search parameters; when the engine does not
support one of them yet (it answers 400/501) it scans the type's current versions instead. Either way
`predicate` is applied to each resource (the exact rule), and resources the caller may not see are
left out (guard.can_see), so nothing leaks through these lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from service.fhir.outcome import OperationOutcomeError
from service.interactions.session import Session
from service.storage.store import Stored
from service.storage.tables import resource as R

Predicate = Callable[[dict[str, Any]], bool]


def find(session: Session, rtype: str, criteria: list[tuple[str, str]], predicate: Predicate) -> list[Stored]:
    stored: list[Stored]
    try:
        ids = session.services.search.find_ids(session, rtype, criteria)
        stored = list(session.store.read_many(session.conn, [(rtype, i) for i in ids]).values())
    except OperationOutcomeError as err:
        if err.status not in (400, 501):
            raise
        rows = session.conn.execute(select(R.c.res_type, R.c.res_id, R.c.version, R.c.last_updated, R.c.deleted,
                                           R.c.content).where(R.c.res_type == rtype, R.c.deleted.is_(False)))
        stored = [Stored(r.res_type, r.res_id, r.version, r.last_updated, False,
                         r.content.encode() if isinstance(r.content, str) else r.content) for r in rows]
    out = []
    for s in stored:
        res = orjson.loads(s.content) if s.content else None
        if res is not None and predicate(res) and session.guard.can_see(session.ctx, rtype, res):
            out.append(s)
    return out


def ref(resource: dict[str, Any], element: str) -> str | None:
    value = resource.get(element)
    return value.get("reference") if isinstance(value, dict) else None


CURRENT_TEAM = ("proposed", "active", "suspended")


def care_teams_of_patient(session: Session, patient_ref: str) -> list[dict[str, Any]]:
    """The person's current care teams (proposed, active or suspended), active ones first."""
    found = find(session, "CareTeam", [("subject", patient_ref)],
                 lambda r: ref(r, "subject") == patient_ref and r.get("status", "active") in CURRENT_TEAM)
    return sorted((s.json() for s in found), key=lambda t: t.get("status", "active") != "active")


def _ended(period: Any, today: str) -> bool:
    end = period.get("end") if isinstance(period, dict) else None
    return isinstance(end, str) and end[:10] < today


def members(team: dict[str, Any]) -> list[str]:
    """Who is in the team now: participants of an active team (the care relationships the access policy
    counts) whose own period, and the team's, have not ended."""
    today = datetime.now(UTC).date().isoformat()
    if team.get("status", "active") != "active" or _ended(team.get("period"), today):
        return []
    return [p["member"]["reference"] for p in team.get("participant") or ()
            if isinstance(p, dict) and isinstance(p.get("member"), dict) and p["member"].get("reference")
            and not _ended(p.get("period"), today)]


def care_teams_of_member(session: Session, member_ref: str) -> list[dict[str, Any]]:
    """The active care teams `member_ref` is in now."""
    found = find(session, "CareTeam", [("participant", member_ref)], lambda r: member_ref in members(r))
    return [s.json() for s in found]
