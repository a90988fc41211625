"""The National Data Opt-out list: NHS numbers whose records are left out of research and planning (HRESCH,
HOPERAT) and of exports. It never affects direct care. Imported with `sharedcare optout import FILE`
(one NHS number per line; `--replace` makes the file the whole list, as the national service publishes
it). A person can also record the opt-out as a Consent (scope research, a deny provision for those
purposes): the decision point honours both."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.engine import Connection

from fhir_profiles.identifiers import NHS_NUMBER_SYSTEM, nhs_number_problem
from service.clock import now_us
from service.policy.tables import data_opt_out as O
from service.search.tables import sp_token as T


def parse_lines(lines: Iterable[str]) -> tuple[list[str], list[tuple[int, str]]]:
    """(valid NHS numbers, [(line number, problem)]); blank lines and `#` comments are skipped."""
    good: list[str] = []
    bad: list[tuple[int, str]] = []
    for n, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip().replace(" ", "")
        if not text:
            continue
        problem = nhs_number_problem(text)
        if problem:
            bad.append((n, problem))
        else:
            good.append(text)
    return good, bad


def import_numbers(conn: Connection, numbers: Iterable[str], *, source: str, replace: bool = False) -> int:
    """Add the NHS numbers (or, with `replace`, make them the whole list). Returns how many are new."""
    wanted = sorted(set(numbers))
    if replace:
        conn.execute(delete(O))
        have: set[str] = set()
    else:
        have = {r[0] for r in conn.execute(select(O.c.nhs_number))}
    new = [n for n in wanted if n not in have]
    now = now_us()
    for i in range(0, len(new), 1000):
        conn.execute(insert(O), [{"nhs_number": n, "source": source[:128], "recorded_us": now}
                                 for n in new[i:i + 1000]])
    return len(new)


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(O)).scalar_one())


def has_opted_out(conn: Connection, patient_id: str) -> bool:
    """Whether the patient's NHS number is on the list."""
    stmt = select(exists().where(T.c.res_type == "Patient", T.c.res_id == patient_id, T.c.param == "identifier",
                                 T.c.system == NHS_NUMBER_SYSTEM, T.c.code.in_(select(O.c.nhs_number))))
    return bool(conn.execute(stmt).scalar())


def opted_out_patients() -> Any:
    """A subquery of the Patient ids whose NHS number is on the list."""
    return select(T.c.res_id).where(T.c.res_type == "Patient", T.c.param == "identifier",
                                    T.c.system == NHS_NUMBER_SYSTEM, T.c.code.in_(select(O.c.nhs_number)))
