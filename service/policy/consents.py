"""Loading a person's Consent resources for the decision point: one query per patient (or one per search
for many patients), parsed once per stored version (parsing is a pure function of the stored bytes, so the
memo is safe to keep in any number of processes)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from consent import ParsedConsent, parse_consent
from service.search.tables import sp_compartment as C
from service.search.tables import sp_token as T
from service.storage.tables import resource as R


@lru_cache(maxsize=8192)
def _parse(content: str | bytes, base: str) -> ParsedConsent:
    return parse_consent(orjson.loads(content), base_urls=(base,))


def _active() -> Any:
    return R.c.res_id.in_(select(T.c.res_id).where(T.c.res_type == "Consent", T.c.param == "status",
                                                   T.c.code == "active"))


def for_patient(conn: Connection, patient_id: str, base: str) -> list[ParsedConsent]:
    rows = conn.execute(select(R.c.content).where(
        R.c.res_type == "Consent", R.c.deleted.is_(False), _active(),
        R.c.res_id.in_(select(C.c.res_id).where(C.c.res_type == "Consent", C.c.patient_id == patient_id))))
    return [_parse(r[0], base) for r in rows]


def for_patients(conn: Connection, patients: Any, base: str) -> dict[str, list[ParsedConsent]]:
    """Active consents by patient id; `patients` is a subquery of patient ids, or None for every patient."""
    stmt = select(C.c.patient_id, R.c.content).select_from(
        C.join(R, and_(R.c.res_type == C.c.res_type, R.c.res_id == C.c.res_id))).where(
        C.c.res_type == "Consent", R.c.deleted.is_(False), _active())
    if patients is not None:
        stmt = stmt.where(C.c.patient_id.in_(patients))
    out: dict[str, list[ParsedConsent]] = {}
    for pid, content in conn.execute(stmt):
        out.setdefault(pid, []).append(_parse(content, base))
    return out


def ids(values: Iterable[str]) -> list[str]:
    return sorted(set(values))
