"""What `$meta` at type and system level reports: the profiles, tags and security labels in use on the current
resources the caller may see (https://hl7.org/fhir/R4/resource-operation-meta.html).

The candidates are the resources the search index says carry any (`_profile`, `_tag`, `_security`), under the
same access condition as every search; each is then decided as the backstop (`Repository.visible`), and only
what the caller may see contributes. Read in batches of 500, keyset-paged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, literal, or_, select, tuple_

from service.fhir.types import RESOURCE_TYPES
from service.search.tables import sp_token, sp_uri
from service.storage.store import CURRENT_COLUMNS, row_to_stored
from service.storage.tables import resource as R

BATCH = 500
NOT_THE_RECORD = {"AuditEvent"}  # the audit trail is not the record (as in system search and $everything)


def _carries_meta() -> Any:
    def on(table: Any, params: tuple[str, ...]) -> Any:
        return exists(select(literal(1)).select_from(table).where(
            table.c.res_type == R.c.res_type, table.c.res_id == R.c.res_id, table.c.param.in_(params)))

    return or_(on(sp_token, ("_tag", "_security")), on(sp_uri, ("_profile",)))


def meta_in_use(repo: Any, rtype: str | None) -> dict[str, Any]:
    if rtype is not None:
        repo.require("search-type", rtype)
        types = [rtype]
    else:
        repo.require("search-system", None)
        types = sorted(t for t in RESOURCE_TYPES - NOT_THE_RECORD if repo.may("search-type", t))
    profiles: dict[str, None] = {}
    labels: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"tag": {}, "security": {}}
    if types:
        conds = [R.c.res_type.in_(types), R.c.deleted.is_(False), _carries_meta()]
        access = repo.services.search.access_cond(repo, rtype, None if rtype else set(types))
        if access is not None:
            conds.append(access)
        after: tuple[str, str] | None = None
        while True:
            stmt = select(*CURRENT_COLUMNS).where(*conds)
            if after is not None:
                stmt = stmt.where(tuple_(R.c.res_type, R.c.res_id) > tuple_(literal(after[0]), literal(after[1])))
            rows = [row_to_stored(r) for r in repo._conn.execute(
                stmt.order_by(R.c.res_type, R.c.res_id).limit(BATCH))]
            for s in repo.visible(rows, filtered=True):
                meta = s.json().get("meta") or {}
                for p in meta.get("profile") or ():
                    profiles.setdefault(p, None)
                for kind in ("tag", "security"):
                    for c in meta.get(kind) or ():
                        labels[kind].setdefault((c.get("system", ""), c.get("code", "")), c)
            if len(rows) < BATCH:
                break
            after = (rows[-1].res_type, rows[-1].res_id)
    out: dict[str, Any] = {}
    if profiles:
        out["profile"] = sorted(profiles)
    for kind in ("tag", "security"):
        if labels[kind]:
            out[kind] = [labels[kind][k] for k in sorted(labels[kind])]
    return out
