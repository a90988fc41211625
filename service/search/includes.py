"""_include and _revinclude (with :iterate and *): a bounded number of queries per page.

Each round costs one query per include spec and source (or target) type on `sp_reference`, then one
query per included resource type to read the resources (with that type's access filter), never one
query per resource. `:iterate` repeats over what the previous round added, at most MAX_ROUNDS times.
Every included type is checked with the repository's type check first (`repo.require`): a 403 there fails the
whole search (strict; a partial answer would silently drop data the caller asked for). Included rows come
through the same access condition as matches, and the same per-resource backstop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from service.fhir.stored import Stored
from service.fhir.types import RESOURCE_TYPES
from service.search.params import lookup
from service.search.query import UnknownParameter
from service.search.tables import sp_reference as T
from service.storage.store import row_to_stored
from service.storage.tables import resource as R

MAX_ROUNDS = 4
CHUNK = 500


@dataclass(frozen=True)
class IncludeSpec:
    reverse: bool
    iterate: bool
    source: str  # resource type, or "*"
    param: str  # reference parameter code, or "*"
    target: str | None


def parse_include(reverse: bool, iterate: bool, value: str, rtype: str | None) -> IncludeSpec:
    name = "_revinclude" if reverse else "_include"
    if value == "*":
        return IncludeSpec(reverse, iterate, "*", "*", None)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise UnknownParameter(name, f"{value!r} is not Type:parameter[:targetType]")
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in RESOURCE_TYPES:
        raise UnknownParameter(name, f"{source!r} is not a resource type")
    if "AuditEvent" in (source, target):
        raise UnknownParameter(name, "AuditEvents are the audit trail's, not included in searches of the record "
                                     "(search AuditEvent itself)")
    if target is not None and target not in RESOURCE_TYPES:
        raise UnknownParameter(name, f"{target!r} is not a resource type")
    if param != "*":
        p = lookup(source, param)
        if p is None or p.type != "reference":
            raise UnknownParameter(name, f"{source} has no reference search parameter {param!r}")
    return IncludeSpec(reverse, iterate, source, param, target)


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


def fetch_includes(engine: Any, repo: Any, specs: list[IncludeSpec], matches: list[Stored],
                   seen: set[tuple[str, str]], include_guard: Any = None) -> list[Stored]:
    conn = repo._conn
    out: list[Stored] = []
    frontier = [(s.res_type, s.res_id) for s in matches]
    for rnd in range(MAX_ROUNDS):
        active = [s for s in specs if rnd == 0 or s.iterate]
        if not active or not frontier:
            break
        by_type: dict[str, list[str]] = {}
        for t, i in frontier:
            by_type.setdefault(t, []).append(i)
        wanted: dict[str, set[str]] = {}
        for spec in active:
            for ftype, ids in by_type.items():
                for chunk in _chunks(ids):
                    if not spec.reverse:
                        if spec.source not in ("*", ftype):
                            continue
                        q = select(T.c.target_type, T.c.target_id).where(
                            T.c.res_type == ftype, T.c.res_id.in_(chunk), T.c.target_type.is_not(None))
                        if spec.target:
                            q = q.where(T.c.target_type == spec.target)
                    else:
                        if spec.target and spec.target != ftype:
                            continue
                        q = select(T.c.res_type, T.c.res_id).where(T.c.target_type == ftype,
                                                                   T.c.target_id.in_(chunk))
                        if spec.source != "*":
                            q = q.where(T.c.res_type == spec.source)
                    if spec.param != "*":
                        q = q.where(T.c.param == spec.param)
                    for tt, tid in conn.execute(q.distinct()):
                        if (tt, tid) not in seen:
                            wanted.setdefault(tt, set()).add(tid)
        new: list[Stored] = []
        for ttype in sorted(wanted):
            if include_guard is not None and not include_guard(ttype):
                continue
            repo.require("search-type", ttype)
            access = engine.access_cond(repo, ttype)
            for chunk in _chunks(sorted(wanted[ttype])):
                stmt = select(R).where(R.c.res_type == ttype, R.c.res_id.in_(chunk), R.c.deleted.is_(False))
                if access is not None:
                    stmt = stmt.where(access)
                rows = []
                for row in conn.execute(stmt.order_by(R.c.res_id)):
                    s = row_to_stored(row)
                    key = (s.res_type, s.res_id)
                    if key in seen or s.content is None:
                        continue
                    seen.add(key)
                    rows.append(s)
                new += repo.visible(rows, filtered=True)
        out += new
        frontier = [(s.res_type, s.res_id) for s in new]
    return out
