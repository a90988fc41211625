"""The search engine: indexing on write, criteria for conditional interactions, and FHIR search.

- `index_listener` runs inside every write transaction (create, update, patch, delete, bundle entries)
  and replaces the resource's index rows, so indexes never drift from the record.
- `find_ids` answers conditional create/update/delete and conditional references (strict: an unknown
  parameter is an error, never ignored).
- `search`, `compartment` and `everything` build one SQL query (criteria AND access filter), count it,
  and page it by keyset (see `service.search.paging`); `_include`/`_revinclude` cost a bounded number
  of queries per page (one per include spec and per target type, never one per resource).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import false, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from service.fhir.outcome import bad_request
from service.fhir.types import RESOURCE_TYPES
from service.interactions.request import FhirRequest, FhirResponse
from service.search import indexer
from service.search.filter import SearchFilter
from service.search.params import compartment_params, params_for
from service.search.query import Context, UnknownParameter, compartment_cond, criterion, now_us, security_cond
from service.storage.store import Stored
from service.storage.tables import resource as R

log = logging.getLogger("sharedcare.search")


def compartment_types() -> set[str]:
    return set(compartment_params()) | {"Patient"}


class SearchEngine:
    def __init__(self, services: Any) -> None:
        self.services = services
        self._revincludes: dict[str, list[str]] | None = None

    @property
    def base(self) -> str:
        return self.services.settings.fhir_base

    # -- indexing --------------------------------------------------------------------------------
    def index_listener(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        key = (stored.res_type, stored.res_id)
        if stored.version > 1:
            indexer.clear(conn, [key])
        if resource is None or stored.deleted:
            return
        indexer.insert_rows(conn, indexer.index_rows(stored.res_type, stored.res_id, resource, self.base))

    # -- access filters in SQL -------------------------------------------------------------------
    def filter_for(self, session: Any, rtype: str) -> SearchFilter | None:
        hook = getattr(session.guard, "search_filter", None)
        if hook is None:
            return None
        sf = hook(session.ctx, rtype)
        return None if sf is None or sf.is_noop else sf

    @staticmethod
    def filter_sql(rtype: str | None, sf: SearchFilter, types: set[str] | None = None) -> ColumnElement[bool] | None:
        """SQL for a SearchFilter on `resource` rows of `rtype` (or, rtype None, of the given types)."""
        if sf.deny_all:
            return false()
        conds: list[ColumnElement[bool]] = []
        for part in sf.all_of:
            sub = SearchEngine.filter_sql(rtype, part, types)
            if sub is not None:
                conds.append(sub)
        if sf.where is not None:
            conds.append(sf.where.sql(rtype))
        if sf.patients is not None:
            in_comp = rtype in compartment_types() if rtype is not None else None
            if rtype is not None:
                if in_comp:
                    conds.append(compartment_cond(rtype, sf.patients))
                elif sf.confine_non_compartment:
                    return false()
            else:
                from sqlalchemy import or_
                ctypes = compartment_types()
                comp = [t for t in (types or RESOURCE_TYPES) if t in ctypes]
                other = [t for t in (types or RESOURCE_TYPES) if t not in ctypes]
                parts = [R.c.res_type.in_(comp) & compartment_cond(None, sf.patients)] if comp else []
                if other and not sf.confine_non_compartment:
                    parts.append(R.c.res_type.in_(other))
                conds.append(or_(*parts) if parts else false())
        if sf.exclude_security:
            conds.append(security_cond(rtype, sf.exclude_security))
        if not conds:
            return None
        from sqlalchemy import and_
        return and_(*conds)

    def access_cond(self, session: Any, rtype: str | None, types: set[str] | None = None
                    ) -> ColumnElement[bool] | None:
        hook = getattr(session.guard, "search_filter", None)
        if hook is None:
            return None
        if rtype is not None:
            sf = self.filter_for(session, rtype)
            return None if sf is None else self.filter_sql(rtype, sf)
        # system level: group the types by their filter
        from sqlalchemy import and_, or_
        groups: dict[SearchFilter | None, list[str]] = {}
        for t in sorted(types or RESOURCE_TYPES):
            groups.setdefault(self.filter_for(session, t), []).append(t)
        if list(groups) == [None]:
            return None
        parts = []
        for sf, ts in groups.items():
            cond = None if sf is None else self.filter_sql(None, sf, set(ts))
            parts.append(R.c.res_type.in_(ts) if cond is None else and_(R.c.res_type.in_(ts), cond))
        return or_(*parts)

    def context(self, session: Any) -> Context:
        return Context(base=self.base, filters=lambda t: self.access_cond(session, t), now_us=now_us())

    # -- conditional interactions ----------------------------------------------------------------
    def find_ids(self, session: Any, rtype: str, criteria: str | list[tuple[str, str]]) -> list[str]:
        """Ids of current `rtype` resources matching every criterion (no access filter: callers check)."""
        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True) if isinstance(criteria, str) \
            else list(criteria)
        if not params:
            raise bad_request(f"Conditional criteria for {rtype} are empty")
        cx = Context(base=self.base, now_us=now_us())
        conds: list[ColumnElement[bool]] = [R.c.res_type == rtype, R.c.deleted.is_(False)]
        for key, value in params:
            if key in ("_format", "_pretty"):
                continue
            try:
                conds.append(criterion(rtype, key, value, cx))
            except UnknownParameter as exc:
                raise bad_request(f"Conditional criteria: unknown search parameter {exc.name!r} ({exc.why})",
                                  code="not-supported") from None
        return [r[0] for r in session.conn.execute(select(R.c.res_id).where(*conds).order_by(R.c.res_id))]

    # -- search ----------------------------------------------------------------------------------
    def search(self, req: FhirRequest, session: Any, rtype: str | None) -> FhirResponse:
        from service.search.run import run_search

        return run_search(self, req, session, rtype)

    def compartment(self, req: FhirRequest, session: Any, ctype: str, cid: str, rtype: str) -> FhirResponse:
        from service.search.run import run_compartment

        return run_compartment(self, req, session, ctype, cid, rtype)

    def everything(self, req: FhirRequest, session: Any, pid: str) -> FhirResponse:
        from service.search.run import run_everything

        return run_everything(self, req, session, pid)

    # -- capability ------------------------------------------------------------------------------
    def capability_params(self, rtype: str) -> list[dict[str, Any]]:
        spec = "http://hl7.org/fhir/SearchParameter/"
        out = [{"name": "_id", "definition": spec + "Resource-id", "type": "token"},
               {"name": "_lastUpdated", "definition": spec + "Resource-lastUpdated", "type": "date"}]
        out += [p.capability() for _, p in sorted(params_for(rtype).items())]
        return out

    def capability_includes(self, rtype: str) -> tuple[list[str], list[str]] | None:
        inc = sorted(f"{rtype}:{c}" for c, p in params_for(rtype).items() if p.type == "reference")
        if self._revincludes is None:
            rev: dict[str, list[str]] = {}
            for src in sorted(RESOURCE_TYPES):
                for c, p in params_for(src).items():
                    if p.type == "reference":
                        for t in p.targets:
                            rev.setdefault(t, []).append(f"{src}:{c}")
            self._revincludes = rev
        revs = sorted(set(self._revincludes.get(rtype, [])))
        if not inc and not revs:
            return None
        return (inc + ["*"] if inc else []), revs
