"""The search engine: indexing on write, criteria for conditional interactions, and FHIR search.

- `index_listener` runs inside every write transaction (create, update, patch, delete, bundle entries)
  and replaces the resource's index rows, so indexes never drift from the record. On PostgreSQL a new
  resource's rows go into its own insert statement instead (`first_rows`, service.storage.store).
- `find_ids` answers conditional create/update/delete and conditional references (strict: an unknown
  parameter is an error, never ignored), with the caller's access condition: only what they may see matches.
- `search`, `compartment` and `everything` build one SQL query (criteria AND access filter), count it,
  and page it by keyset (see `service.search.paging`); `_include`/`_revinclude` cost a bounded number
  of queries per page (one per include spec and per target type, never one per resource).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import false, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from service.fhir.outcome import OperationOutcomeError, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.fhir.stored import Stored
from service.fhir.types import RESOURCE_TYPES
from service.ownership import patient_data_types
from service.search import indexer
from service.search.filter import SearchFilter
from service.search.params import params_for
from service.search.query import (
    Context,
    UnknownParameter,
    compartment_cond,
    criterion,
    now_us,
    security_cond,
)
from service.storage.tables import resource as R

log = logging.getLogger("sharedcare.search")


def compartment_types() -> frozenset[str]:
    return patient_data_types()


class SearchEngine:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.base = settings.fhir_base
        self._revincludes: dict[str, list[str]] | None = None
        self.first_rows = indexer.FirstIndexRows(self.index_listener, self.base)

    @property
    def secret(self) -> bytes:
        """The key that signs paging cursors (service.search.paging)."""
        from service.secrets import server_secret

        return server_secret(self.settings)

    # -- indexing --------------------------------------------------------------------------------
    def index_listener(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        key = (stored.res_type, stored.res_id)
        if stored.version > 1:
            indexer.clear(conn, [key])
        if resource is None or stored.deleted:
            return
        indexer.insert_rows(conn, indexer.index_rows(stored.res_type, stored.res_id, resource, self.base,
                                                     stored.owners))

    @staticmethod
    def patients_identified(conn: Connection, system: str, value: str) -> list[str]:
        """The Patients carrying identifier `system|value` (at most two: enough to tell one from several)."""
        from service.search.tables import sp_token as T

        return list(conn.execute(select(T.c.res_id).where(
            T.c.res_type == "Patient", T.c.param == "identifier", T.c.system == system, T.c.code == value)
            .limit(2)).scalars())

    # -- access filters in SQL -------------------------------------------------------------------
    @staticmethod
    def filter_for(repo: Any, rtype: str) -> SearchFilter | None:
        sf = repo._access.search_filter(rtype)
        return None if sf is None or sf.is_noop else sf

    @staticmethod
    def filter_sql(rtype: str | None, sf: SearchFilter, cx: Context, types: set[str] | None = None
                   ) -> ColumnElement[bool] | None:
        """SQL for a SearchFilter on `resource` rows of `rtype` (or, rtype None, of the given types)."""
        from sqlalchemy import and_, or_

        if sf.deny_all:
            return false()
        conds: list[ColumnElement[bool]] = []
        for part in sf.all_of:
            sub = SearchEngine.filter_sql(rtype, part, cx, types)
            if sub is not None:
                conds.append(sub)
        if sf.where is not None:
            conds.append(sf.where.sql(rtype))
        if sf.scopes is not None:
            conds.append(_scope_sql(rtype, sf, cx, types))
        if sf.patients is not None:
            in_comp = rtype in compartment_types() if rtype is not None else None
            if rtype is not None:
                if in_comp:
                    conds.append(compartment_cond(rtype, sf.patients))
                elif sf.confine_non_compartment:
                    return false()
            else:
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
        return and_(*conds)

    def access_cond(self, repo: Any, rtype: str | None, types: set[str] | None = None, cx: Context | None = None
                    ) -> ColumnElement[bool] | None:
        from sqlalchemy import and_, or_

        cx = cx or self.context(repo)
        if rtype is not None:
            sf = self.filter_for(repo, rtype)
            return None if sf is None else self.filter_sql(rtype, sf, cx)
        # system level: group the types by their filter
        groups: dict[SearchFilter | None, list[str]] = {}
        for t in sorted(types or RESOURCE_TYPES):
            groups.setdefault(self.filter_for(repo, t), []).append(t)
        if list(groups) == [None]:
            return None
        parts = []
        for sf, ts in groups.items():
            cond = None if sf is None else self.filter_sql(None, sf, cx, set(ts))
            parts.append(R.c.res_type.in_(ts) if cond is None else and_(R.c.res_type.in_(ts), cond))
        return or_(*parts)

    def context(self, repo: Any) -> Context:
        cx = Context(base=self.base, now_us=now_us())
        cx.filters = lambda t: self.access_cond(repo, t, cx=cx)
        return cx

    # -- conditional interactions ----------------------------------------------------------------
    def find_ids(self, repo: Any, rtype: str, criteria: str | list[tuple[str, str]]) -> list[str]:
        """Ids of current `rtype` resources matching every criterion that the caller may see (the access
        condition is part of the query: a hidden resource never matches, and is never counted)."""
        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True) if isinstance(criteria, str) \
            else list(criteria)
        if not params:
            raise bad_request(f"Conditional criteria for {rtype} are empty")
        from service.search.run import check_limits

        check_limits(params)
        cx = self.context(repo)
        conds: list[ColumnElement[bool]] = [R.c.res_type == rtype, R.c.deleted.is_(False)]
        for key, value in params:
            if key in ("_format", "_pretty"):
                continue
            try:
                conds.append(criterion(rtype, key, value, cx))
            except UnknownParameter as exc:
                raise bad_request(f"Conditional criteria: unknown search parameter {exc.name!r} ({exc.why})",
                                  code="not-supported") from None
        access = self.access_cond(repo, rtype, cx=cx)
        if access is not None:
            conds.append(access)
        return [r[0] for r in repo._conn.execute(select(R.c.res_id).where(*conds).order_by(R.c.res_id))]

    # -- search ----------------------------------------------------------------------------------
    def search(self, req: FhirRequest, repo: Any, rtype: str | None) -> FhirResponse:
        from service.search.run import run_search

        return run_search(self, req, repo, rtype)

    def compartment(self, req: FhirRequest, repo: Any, ctype: str, cid: str, rtype: str) -> FhirResponse:
        from service.search.run import run_compartment

        return run_compartment(self, req, repo, ctype, cid, rtype)

    def everything(self, req: FhirRequest, repo: Any, pid: str) -> FhirResponse:
        from service.search.run import run_everything

        return run_everything(self, req, repo, pid)

    # -- capability ------------------------------------------------------------------------------
    def capability_params(self, rtype: str) -> list[dict[str, Any]]:
        if rtype == "AuditEvent":  # searched over the audit log's columns (service/audit/trail.py)
            from service.audit.params import CAPABILITY

            return [dict(p) for p in CAPABILITY]
        spec = "http://hl7.org/fhir/SearchParameter/"
        out = [{"name": "_id", "definition": spec + "Resource-id", "type": "token"},
               {"name": "_lastUpdated", "definition": spec + "Resource-lastUpdated", "type": "date"},
               {"name": "_content", "definition": spec + "Resource-content", "type": "string",
                "documentation": "Every word given appears in the resource (any string in it; whole words, "
                                 "case- and accent-free)"},
               {"name": "_text", "definition": spec + "DomainResource-text", "type": "string",
                "documentation": "Every word given appears in the narrative (text.div)"},
               {"name": "_list", "type": "reference",
                "documentation": "The resources a List names (List/<id>), when the caller may see the List"}]
        out += [p.capability() for _, p in sorted(params_for(rtype).items())]
        from service.search.composite import composites_for

        out += [c.capability() for _, c in sorted(composites_for(rtype).items())]
        return out

    def capability_includes(self, rtype: str) -> tuple[list[str], list[str]] | None:
        if rtype == "AuditEvent":
            return None
        inc = sorted(f"{rtype}:{c}" for c, p in params_for(rtype).items() if p.type == "reference")
        if self._revincludes is None:
            rev: dict[str, list[str]] = {}
            for src in sorted(RESOURCE_TYPES - {"AuditEvent"}):
                for c, p in params_for(src).items():
                    if p.type == "reference":
                        for t in p.targets:
                            rev.setdefault(t, []).append(f"{src}:{c}")
            self._revincludes = rev
        revs = sorted(set(self._revincludes.get(rtype, [])))
        if not inc and not revs:
            return None
        return (inc + ["*"] if inc else []), revs


def _scope_sql(rtype: str | None, sf: SearchFilter, cx: Context, types: set[str] | None) -> ColumnElement[bool]:
    """What the scopes reach, as SQL: any one clause (its patient's data, and its restrictions as search
    criteria). A restriction the type has no parameter for matches nothing (it never widens)."""
    from sqlalchemy import and_, or_

    assert sf.scopes is not None
    if rtype is None and any(c.criteria for c in sf.scopes):
        return or_(*[and_(R.c.res_type == t, _scope_sql(t, sf, cx, None)) for t in sorted(types or RESOURCE_TYPES)])
    alternatives = []
    for clause in sf.scopes:
        parts: list[ColumnElement[bool]] = []
        if clause.patient is not None:
            parts.append(compartment_cond(rtype, [clause.patient]))
        for key, value in clause.criteria:
            try:
                parts.append(criterion(rtype, key, value, cx))
            except (UnknownParameter, OperationOutcomeError):  # a restriction we cannot compile reaches nothing
                parts.append(false())
        alternatives.append(and_(*parts) if parts else true())
    return or_(*alternatives) if alternatives else false()
