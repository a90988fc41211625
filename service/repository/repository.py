"""The repository: one request's only door to the stored record.

Built per unit of work from the request's frozen context (`Repository(services, conn, ctx, record)`, or
`Repository.internal(services, conn)` for the service's own jobs), it is the only way handlers, `$operations`,
workflows, search, history, Bundle entries and pages read or write resources. Every method:
1. checks the type first (scopes, purpose of use, what the caller's kind may do with the type: 403);
2. turns the access policy into the SQL of every query it runs (searches, counts, paging, includes,
   conditional matching, conditional references), and loads a row together with the facts the decision
   about it needs, in one statement, so a resource the caller may not see costs what a missing one does;
3. decides per resource as a backstop, answers for a hidden resource exactly as for a missing one
   (service/repository/errors.py), and redacts what the caller may see only in part;
4. records what it touched and decided in the request's record, which the audit consumes.
Writes run the type's rules (service/repository/rules.py), validate, and store, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import bindparam, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from service import ownership
from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.db import Prepared
from service.fhir.decimals import patched
from service.fhir.outcome import OperationOutcomeError, bad_request, forbidden, precondition_failed
from service.fhir.stored import Stored
from service.fhir.types import is_valid_id
from service.fhir.validation import validate_resource
from service.policy import consents
from service.policy.guard import Verdict
from service.repository import errors
from service.repository.redaction import only_written_by
from service.repository.rules import Change

if TYPE_CHECKING:
    from service.policy.guard import Access
    from service.storage.store import Store

NHS_NUMBER = ownership.NHS_NUMBER
AUDIT = "AuditEvent"  # kept in the audit log, not with the record (service/audit/trail.py)


def _existing(conn: Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (type, id) exist and are not deleted. PostgreSQL: one statement for any number (the keys
    as two arrays, joined on the primary key). SQLite: a primary-key probe each for a few, one IN query for many."""
    from service.storage.tables import resource as R

    if conn.dialect.name == "postgresql":
        return {(t, i) for t, i in _EXISTING_PG.rows(conn, {"types": [t for t, _ in keys],
                                                             "ids": [i for _, i in keys]})}
    if len(keys) <= 4:
        stmt = _EXISTS.get("one")
        if stmt is None:
            stmt = _EXISTS["one"] = Prepared(lambda _d: select(R.c.res_id).where(
                R.c.res_type == bindparam("t"), R.c.res_id == bindparam("i"), R.c.deleted.is_(False)))
        return {(t, i) for t, i in keys if stmt.rows(conn, {"t": t, "i": i})}
    return {(t, i) for t, i in conn.execute(select(R.c.res_type, R.c.res_id).where(
        tuple_(R.c.res_type, R.c.res_id).in_(list(keys)), R.c.deleted.is_(False)))}


_EXISTING_PG = Prepared(lambda _d: text(
    "SELECT r.res_type, r.res_id FROM resource AS r JOIN unnest(CAST(:types AS VARCHAR[]), CAST(:ids AS VARCHAR[]))"
    " AS k(t, i) ON r.res_type = k.t AND r.res_id = k.i WHERE NOT r.deleted"))
_EXISTS: dict[str, Any] = {}


def trail() -> Any:
    from service.audit import trail as module

    return module


class StorageUnavailable(Exception):
    """The database cannot be used for a job of the service's own."""


class Repository:
    def __init__(self, services: Any, conn: Connection, ctx: RequestContext, record: RequestRecord) -> None:
        self.ctx = ctx
        self.record = record
        self.services = services
        self._conn = conn
        self._store: Store = services.store
        self._access: Access = services.policy.bind(conn, ctx, record, services.store)
        self.in_bundle = False
        self.memo: dict[str, Any] = {}  # per-request caches of the code working through this repository
        conn.info["sharedcare.ctx"] = ctx  # the writer, for the authorship stamper; cleared with the unit of work

    @classmethod
    @contextmanager
    def job(cls, services: Any) -> Iterator[Repository]:
        """A unit of work of the service's own (a write transaction) with the internal repository; a database
        that cannot be used (not migrated, unreachable) raises StorageUnavailable."""
        try:
            with services.db.write() as conn:
                yield cls.internal(services, conn)
        except SQLAlchemyError as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    @classmethod
    def internal(cls, services: Any, conn: Connection) -> Repository:
        """The service's own jobs (demo load, publishing forms, reindexing): everything, explicitly."""
        return cls(services, conn, RequestContext.system(), RequestRecord())

    def server(self) -> Repository:
        """The server's own access on this unit of work, explicitly: for its reference data (the forms a
        response pinned) and its own publications, whoever the request is from."""
        if self.ctx.is_internal:
            return self
        return Repository(self.services, self._conn, RequestContext.system(), RequestRecord())

    @property
    def base(self) -> str:
        return str(self.services.settings.fhir_base)

    @property
    def principal(self) -> Any:
        return self.ctx.principal

    # -- type level ---------------------------------------------------------------------------------
    def require(self, interaction: str, rtype: str | None) -> None:
        """403 unless the caller may do `interaction` on `rtype` at all (before any storage access)."""
        self._access.check_type(interaction, rtype)

    def may(self, interaction: str, rtype: str | None) -> bool:
        return self._access.may(interaction, rtype)

    # -- loading ------------------------------------------------------------------------------------
    def _load(self, rtype: str, rid: str) -> Stored | None:
        """The current row (deleted or not) and the facts a decision about it needs, in one statement."""
        if not is_valid_id(rid):
            return None
        if self._access.unrestricted or (self.principal is not None and self.principal.kind == "ig"):
            return self._store.current(self._conn, rtype, rid)
        row, found, related, grant = consents.read_row_and_facts(self._conn, rtype, rid, self.base,
                                                                 self._access.fact_parameters())
        if row is None:
            return None
        version, lu, deleted, owners, content = row
        stored = Stored(rtype, rid, version, lu, bool(deleted), content.encode() if isinstance(content, str) else content,
                        owners=ownership.parse_owners(owners))
        if stored.owners:
            self._access.prime(stored.owners[0], found, related, grant)
        return stored

    def _verdict(self, interaction: str, stored: Stored) -> Verdict:
        if stored.content is None:  # a deleted row that kept nothing: only the unrestricted may know of it
            return Verdict() if self._access.unrestricted else Verdict(error=errors.missing(stored.res_type,
                                                                                             stored.res_id), hidden=True)
        return self._access.visibility(interaction, stored.res_type, stored.json(), stored.owners)

    def _visible_current(self, interaction: str, rtype: str, rid: str) -> tuple[Stored | None, Verdict]:
        """The current row if the caller may know it exists (else None), and the verdict on it; 403 for a
        related caller the person's choices refuse."""
        stored = self._load(rtype, rid)
        if stored is None:
            return None, Verdict()
        v = self._verdict(interaction, stored)
        if v.hidden:
            return None, v
        if v.error is not None:
            raise v.error
        return stored, v

    @staticmethod
    def _served(stored: Stored, v: Verdict) -> Stored:
        if v.redact_to is None:
            return stored
        content = orjson.dumps(only_written_by(stored.json(), v.redact_to))
        return Stored(stored.res_type, stored.res_id, stored.version, stored.last_updated, stored.deleted, content,
                      stored.method, stored.seq, stored.owners)

    def _saw(self, stored: Stored) -> None:
        self.record.saw(f"{stored.res_type}/{stored.res_id}/_history/{stored.version}")
        self.record.touch(stored.owners, stored.res_type)

    # -- reads --------------------------------------------------------------------------------------
    def read(self, rtype: str, rid: str, interaction: str = "read") -> Stored:
        """The current version: 404 when missing or hidden, 410 when deleted, 403 `suppressed`."""
        if rtype == AUDIT:
            return trail().read(self, rid, interaction)  # type: ignore[no-any-return]
        self.require(interaction, rtype)
        stored, v = self._visible_current(interaction, rtype, rid)
        if stored is None:
            raise errors.missing(rtype, rid)
        if stored.deleted:
            raise errors.deleted(rtype, rid, stored.etag)
        self._saw(stored)
        return self._served(stored, v)

    def get(self, rtype: str, rid: str) -> Stored | None:
        """The current version if it exists and the caller may see it, else None (no error either way)."""
        if not self.may("read", rtype):
            return None
        try:
            if rtype == AUDIT:
                return trail().read(self, rid)  # type: ignore[no-any-return]
            stored, v = self._visible_current("read", rtype, rid)
        except OperationOutcomeError:
            return None
        if stored is None or stored.deleted:
            return None
        self._saw(stored)
        return self._served(stored, v)

    def vread(self, rtype: str, rid: str, vid: str) -> Stored:
        if rtype == AUDIT:
            return trail().vread(self, rid, vid)  # type: ignore[no-any-return]
        self.require("vread", rtype)
        if not vid.isdigit():
            raise errors.missing_version(rtype, rid, vid)
        current, _ = self._visible_current("vread", rtype, rid)
        if current is None:
            raise errors.missing(rtype, rid)
        stored = self._store.version(self._conn, rtype, rid, int(vid))
        if stored is None:
            raise errors.missing_version(rtype, rid, vid)
        if stored.deleted:
            raise errors.deletion(rtype, rid, stored.version, stored.etag)
        v = self._verdict("vread", stored)
        if v.hidden:
            raise errors.missing_version(rtype, rid, vid)
        if v.error is not None:
            raise v.error
        self._saw(stored)
        return self._served(stored, v)

    def lookup(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """The current versions of these resources that exist and that the caller may see (one query per 500)."""
        wanted = sorted({k for k in keys if k[0] != AUDIT and is_valid_id(k[1]) and self.may("read", k[0])})
        found = self._store.read_many(self._conn, wanted)
        return {(s.res_type, s.res_id): s for s in self.visible(list(found.values()))}

    def visible(self, rows: Sequence[Stored], *, filtered: bool = False) -> list[Stored]:
        """The backstop: the rows the caller may see, redacted where needed. `filtered`: the rows came through
        the policy's SQL condition (rows it decided exactly are not decided again)."""
        out = []
        for s in rows:
            if s.content is None or s.deleted:
                continue
            if filtered and self._access.exact_for(s.res_type) and not self._co_authored(s):
                out.append(s)
                self.record.touch(s.owners, s.res_type)
                continue
            v = self._verdict("read", s)
            if v.visible:
                self.record.touch(s.owners, s.res_type)
                out.append(self._served(s, v))
        return out

    def _co_authored(self, s: Stored) -> bool:
        """A joint assessment the caller's organisation contributed to (decided per resource: it may be
        redacted)."""
        if s.res_type != "QuestionnaireResponse" or self.principal is None:
            return False
        from service.access.context import org_keys
        from service.policy.authorship import author_keys

        return bool(org_keys(self.principal) & author_keys(s.json()))

    # -- conditional matching -----------------------------------------------------------------------
    def find(self, rtype: str, criteria: str | list[tuple[str, str]],
             predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[Stored]:
        """The current resources matching search `criteria` that the caller may see (and `predicate`), as
        conditional interactions and workflows need them: an unknown parameter is an error, never ignored."""
        self.require("search-type", rtype)
        ids = self.services.search.find_ids(self, rtype, criteria)
        found = self._store.read_many(self._conn, [(rtype, i) for i in ids])
        rows = [found[(rtype, i)] for i in ids if (rtype, i) in found]
        out = [s for s in self.visible(rows, filtered=True) if predicate is None or predicate(s.json())]
        for s in out:
            self.record.saw(f"{s.res_type}/{s.res_id}/_history/{s.version}")
        return out

    def _one_match(self, rtype: str, criteria: str | list[tuple[str, str]], what: str) -> Stored | None:
        found = self.find(rtype, criteria)  # (only what the caller may see matches, and is counted)
        if len(found) > 1:
            text = criteria if isinstance(criteria, str) else "&".join(f"{k}={v}" for k, v in criteria)
            raise precondition_failed(f"{what} {text!r} matched {len(found)} {rtype} resources; it must match at "
                                      "most one")
        return found[0] if found else None

    def resolve_reference(self, ref: str) -> str:
        """A conditional reference `Type?criteria` (in a Bundle): the one match the caller may see, else 412."""
        rtype, _, query = ref.partition("?")
        try:
            found = self.find(rtype, query)
        except OperationOutcomeError as err:
            raise OperationOutcomeError(err.status, err.issues[0].code if err.issues else "invalid",
                                        f"the conditional reference {ref!r} cannot be searched: {err.diagnostics}"
                                        ) from None
        if len(found) != 1:
            raise precondition_failed(f"the conditional reference {ref!r} matched {len(found)} {rtype} resources; "
                                      "it must match exactly one")
        return f"{rtype}/{found[0].res_id}"

    # -- writes -------------------------------------------------------------------------------------
    @staticmethod
    def holds_create(services: Any, rtype: str) -> bool:
        """Whether a create of this type writes nothing but the new resource (no write rule, not the audit log's,
        no listener of its own): then a `Database.single` unit holds it back for the audit to send with its row
        (service/held.py)."""
        return rtype != AUDIT and not services.rules.of(rtype) and services.store.quiet(rtype)

    def create(self, resource: dict[str, Any], *, assigned_id: str | None = None, change: Change | None = None
               ) -> Stored:
        """A new resource with a server-assigned id (`assigned_id`: planned by a transaction)."""
        rtype = resource["resourceType"]
        if rtype == AUDIT:  # a partner system's AuditEvent: into the audit log, kept as sent
            return trail().create(self, resource)  # type: ignore[no-any-return]
        self.require("create", rtype)
        resource.pop("id", None)
        return self._write(rtype, None, resource, change or Change(), "create", rid=assigned_id)

    def create_unless_exists(self, resource: dict[str, Any], condition: str | list[tuple[str, str]], *,
                             assigned_id: str | None = None) -> tuple[Stored, bool]:
        """Conditional create (If-None-Exist): the one match the caller may see, or a new resource."""
        rtype = resource["resourceType"]
        self.require("create", rtype)
        if rtype == AUDIT:
            found = trail().find(self, condition)
            if len(found) > 1:
                raise precondition_failed(f"If-None-Exist matched {len(found)} AuditEvent resources; it must match "
                                          "at most one")
            return (found[0], False) if found else (self.create(resource), True)
        match = self._one_match(rtype, condition, "If-None-Exist")
        if match is not None:
            return match, False
        return self.create(resource, assigned_id=assigned_id), True

    def update(self, rtype: str, rid: str, resource: dict[str, Any], *, if_match: int | None = None,
               method: str = "PUT", change: Change | None = None, interaction: str = "update") -> tuple[Stored, bool]:
        """The next version of `rtype/rid` (or, for administrators, a new resource at that id)."""
        self.require(interaction, rtype)
        current, v = self._visible_current(interaction, rtype, rid)
        if current is None:
            if not self._access.unrestricted:
                raise errors.no_client_ids(rtype, rid)
            if if_match is not None:
                raise precondition_failed(f"{rtype}/{rid} does not exist, so If-Match cannot match")
            resource["id"] = rid
            return self._write(rtype, None, resource, change or Change(), "create", rid=rid, method=method,
                               at_id=True), True
        if v.redact_to is not None:
            raise forbidden(f"{rtype}/{rid} holds answers withheld from you by the person's sharing choices: you may "
                            "change your own answers with $save-answers, not replace the whole")
        current = self._lock(current)
        if if_match is not None and if_match != current.version:
            raise precondition_failed(
                f"{rtype}/{rid} is at version {current.version}, not {if_match} (If-Match): read it again and retry")
        resource["id"] = rid
        stored = self._write(rtype, current, resource, change or Change(), "update", rid=rid, method=method)
        return stored, current.deleted

    def patch(self, rtype: str, rid: str, apply: Callable[[dict[str, Any]], dict[str, Any]], *,
              if_match: int | None = None) -> Stored:
        """Apply `apply(current) -> next` to the current version (404 when missing or hidden, 410 deleted)."""
        self.require("patch", rtype)
        current, v = self._visible_current("patch", rtype, rid)
        if current is None:
            raise errors.missing(rtype, rid)
        if current.deleted:
            raise errors.deleted(rtype, rid, current.etag)
        if v.redact_to is not None:
            raise forbidden(f"{rtype}/{rid} holds answers withheld from you by the person's sharing choices")
        current = self._lock(current)
        if if_match is not None and if_match != current.version:
            raise precondition_failed(f"{rtype}/{rid} is at version {current.version}, not {if_match} (If-Match)")
        after = patched(apply(current.json()), current.content)  # (decimal literals as stored and as sent)
        if not isinstance(after, dict) or after.get("resourceType") != rtype or after.get("id") != rid:
            raise OperationOutcomeError(422, "processing", "A patch may not change the resourceType or id")
        meta = after.get("meta") if isinstance(after.get("meta"), dict) else None
        if meta is not None:
            meta.pop("versionId", None)
            meta.pop("lastUpdated", None)
            if not meta:
                after.pop("meta")
        return self._write(rtype, current, after, Change(), "patch", rid=rid, method="PATCH")

    def delete(self, rtype: str, rid: str, *, if_match: int | None = None) -> Stored | None:
        """Delete; None when there was nothing the caller may know of to delete (missing, hidden or deleted)."""
        self.require("delete", rtype)
        current, _ = self._visible_current("delete", rtype, rid)
        if current is None or current.deleted:
            if if_match is not None:
                raise precondition_failed(f"{rtype}/{rid} does not exist, so If-Match cannot match")
            return None
        current = self._lock(current)
        if if_match is not None and if_match != current.version:
            raise precondition_failed(f"{rtype}/{rid} is at version {current.version}, not {if_match} (If-Match)")
        self._access.may_write("delete", rtype, current.json(), current.owners, before=current.json())
        self.memo.pop("references.known", None)  # (a reference to what is deleted no longer resolves)
        self.memo["references.deleted"] = True  # (nor does the policy's word that a patient exists count now)
        stored = self._store.delete(self._conn, current)
        self._saw(stored)
        return stored

    def update_matching(self, rtype: str, criteria: list[tuple[str, str]], resource: dict[str, Any], *,
                        if_match: int | None = None) -> tuple[Stored, bool]:
        """Conditional update: the one match the caller may see, else a new resource."""
        self.require("update", rtype)
        match = self._one_match(rtype, criteria, "Conditional update")
        body_id = resource.get("id")
        if match is not None:
            if body_id not in (None, match.res_id):
                raise bad_request(f"The body's id {body_id!r} does not match the resource found ({match.res_id!r})")
            return self.update(rtype, match.res_id, resource, if_match=if_match)
        if body_id is not None:
            if not isinstance(body_id, str) or not is_valid_id(body_id):
                raise bad_request(f"{body_id!r} is not a valid FHIR id")
            return self.update(rtype, body_id, resource, if_match=if_match)
        return self.create(resource), True

    def delete_matching(self, rtype: str, criteria: list[tuple[str, str]]) -> Stored | None:
        self.require("delete", rtype)
        match = self._one_match(rtype, criteria, "Conditional delete")
        return self.delete(rtype, match.res_id) if match is not None else None

    def match_for_write(self, rtype: str, criteria: list[tuple[str, str]], what: str) -> str | None:
        """The id of the one resource matching `criteria` that the caller may see (conditional PUT/PATCH in a
        Bundle), or None."""
        match = self._one_match(rtype, criteria, what)
        return match.res_id if match is not None else None

    def savepoint(self) -> Any:
        """A SAVEPOINT on this unit of work (a batch entry that fails leaves nothing behind)."""
        self.memo.pop("references.known", None)  # (what a rolled-back entry wrote must not resolve later)
        self.memo["references.deleted"] = True
        return self._conn.begin_nested()

    def store_server_owned(self, resource: dict[str, Any]) -> Stored:
        """A resource the server itself records as part of a write it has allowed (a workflow's Provenance):
        no policy decision of its own; it belongs to whoever its target belongs to."""
        stored = self._store.create(self._conn, resource)
        self._saw(stored)
        return stored

    def locked(self, rtype: str, rid: str, interaction: str = "update") -> Stored:
        """The current version for a workflow to change: visible, not deleted, locked, and writable by the
        caller (404/410/403 otherwise)."""
        self.require(interaction, rtype)
        current, v = self._visible_current(interaction, rtype, rid)
        if current is None:
            raise errors.missing(rtype, rid)
        if current.deleted:
            raise errors.deleted(rtype, rid, current.etag)
        current = self._lock(current)
        if v.redact_to is None:
            self._access.may_write(interaction, rtype, current.json(), current.owners, before=current.json())
        return current

    def write_next(self, current: Stored, resource: dict[str, Any], change: Change) -> Stored:
        """The next version after `current` (from `locked`), through the type's rules."""
        resource["id"] = current.res_id
        return self._write(current.res_type, current, resource, change, "update", rid=current.res_id,
                           method="PUT", checked_current=True)

    def versions(self, rtype: str, rid: str, limit: int = 1000) -> list[Stored]:
        """Every version of a resource the caller may see (newest first, deletions included)."""
        current, _ = self._visible_current("history-instance", rtype, rid)
        if current is None:
            return []
        rows = self._store.history(self._conn, rtype=rtype, rid=rid, count=limit)
        return [r for r in rows if r.deleted or r.content is None or self._verdict("read", r).visible]

    def version(self, rtype: str, rid: str, version: int) -> Stored | None:
        """An earlier version of a resource the caller has already been allowed to see (a merge base)."""
        return self._store.version(self._conn, rtype, rid, version)

    def _lock(self, current: Stored) -> Stored:
        """On PostgreSQL, lock the row for the write (SQLite writers already hold the database's write lock)."""
        if not self._store.postgres:
            return current
        locked = self._store.current(self._conn, current.res_type, current.res_id, lock=True)
        if locked is None:
            raise errors.missing(current.res_type, current.res_id)
        if locked.version != current.version:
            v = self._verdict("update", locked)
            if v.hidden:
                raise errors.missing(current.res_type, current.res_id)
            if v.error is not None:
                raise v.error
        return locked

    def _write(self, rtype: str, current: Stored | None, resource: dict[str, Any], change: Change, interaction: str,
               *, rid: str | None, method: str = "PUT", at_id: bool = False, checked_current: bool = False) -> Stored:
        before = current.json() if current is not None and not current.deleted else None
        if before is not None and not checked_current:
            self._access.may_write("update", rtype, before, current.owners if current else (), before=before)
        owners = ownership.owners(rtype, resource, self._store.resolver(self._conn))
        self._access.may_write("create" if current is None else "update", rtype, resource, owners, before=before)
        if rtype == "Patient":
            self._unique_nhs_number(resource, rid)
        for rule in self.services.rules.of(rtype):
            rule.before(self, rtype, before, resource, change)
        references: list[tuple[str, str]] = []
        validate_resource(resource, expected_type=rtype, references=references)
        if references:
            self._check_references(rtype, rid, references)
        if current is None and not at_id:
            stored = self._store.create(self._conn, resource, rid=rid)
        else:
            stored, _ = self._store.update(self._conn, resource, rid or resource["id"], current, method=method)
        for rule in self.services.rules.of(rtype):
            rule.after(self, stored, before, change)
        if "references.known" in self.memo:  # (what this unit of work wrote resolves for its later writes)
            self.memo["references.known"].add((stored.res_type, stored.res_id))
        self._saw(stored)
        return stored

    def _check_references(self, rtype: str, rid: str | None, references: list[tuple[str, str]]) -> None:
        """Local references must resolve (service/validation/references.py): existence regardless of who may
        see the resource, answered the same for hidden and visible. In a transaction the check waits for all
        its entries (`defer_references`). SHAREDCARE_REFERENCES_LENIENT=1 turns it off for bulk loads."""
        from service.validation import references as refcheck

        if getattr(self.services.settings, "references_lenient", False):
            return
        targets = refcheck.local_targets(references, self.base)
        targets.pop((rtype, rid or ""), None)  # a resource may refer to itself
        known: set[tuple[str, str]] = self.memo.setdefault("references.known", set())  # (this unit of work's)
        keys = sorted(k for k in targets if k not in known)
        if not self.memo.get("references.deleted"):  # the patient whose facts the policy just loaded exists
            keys = [k for k in keys if not (k[0] == "Patient" and self._access.patient_present(k[1]))]
        if not keys:
            return
        found = _existing(self._conn, keys)
        known.update(found)
        missing = [p for k in keys if k not in found for p in targets[k]]
        if not missing:
            return
        pending = self.memo.get("references.deferred")
        if pending is not None:
            pending.append((f"{rtype}/{rid}" if rid else rtype, missing))
            return
        raise refcheck.refuse(missing)

    def defer_references(self) -> None:
        """A transaction: local references are resolved once all its entries are written."""
        self.memo["references.deferred"] = []

    def check_deferred_references(self) -> None:
        """At the end of a transaction: every reference an entry made must now resolve (else 422, all rolled
        back)."""
        from service.validation import references as refcheck

        pending = self.memo.pop("references.deferred", None) or []
        issues = []
        for where, missing in pending:
            keys: set[tuple[str, str]] = set()
            for path, ref in missing:
                keys.update(refcheck.local_targets([(path, ref)], self.base))
            found = _existing(self._conn, sorted(keys))
            still = [(p, ref) for p, ref in missing
                     if not set(refcheck.local_targets([(p, ref)], self.base)) <= found]
            issues += refcheck.issues(still, f"{where} (in this transaction): ")
        if issues:
            from service.fhir.outcome import OperationOutcomeError as Refused

            raise Refused(422, "processing", "", issues=issues)

    def _unique_nhs_number(self, patient: dict[str, Any], rid: str | None) -> None:
        """An NHS number belongs to one Patient in the record. Saying so for a second one reveals only that
        a record with that number exists (the one exception to hidden-as-missing), never which or what."""
        from service.search.tables import sp_token as T

        numbers = sorted({str(i.get("value")).replace(" ", "") for i in patient.get("identifier") or ()
                          if isinstance(i, dict) and i.get("system") == NHS_NUMBER and i.get("value")})
        if not numbers:
            return
        stmt = select(T.c.code).where(T.c.res_type == "Patient", T.c.param == "identifier",
                                      T.c.system == NHS_NUMBER, T.c.code.in_(numbers))
        if rid is not None:
            stmt = stmt.where(T.c.res_id != rid)
        taken = self._conn.execute(stmt.limit(1)).scalar()
        if taken is not None:
            shown = f"{taken[:3]} {taken[3:6]} {taken[6:]}" if len(taken) == 10 else taken
            raise OperationOutcomeError(
                409, "duplicate", f"A person with NHS number {shown} already has a record here, and there is one record "
                "per person. To get access to it you need a care relationship with them: ask their care coordinator "
                "or registered GP to add you to their care team, or accept a referral for them (in an emergency, a "
                "professional allowed to may break glass).")

    # -- searches and history (service/search, service/repository/history.py) ---------------------
    def search(self, req: Any, rtype: str | None) -> Any:
        if rtype == AUDIT:
            return trail().search(self, req)
        with self._valuesets():
            return self.services.search.search(req, self, rtype)

    def _valuesets(self) -> Any:
        """`:in` / `:not-in` expand ValueSets through this repository (service/search/valueset_modifiers.py)."""
        from service.search.valueset_modifiers import expanding
        from service.validation.terminology import expand, fetchers

        def expander(ref: str) -> set[tuple[str, str]] | None:
            fetch_vs, fetch_cs = fetchers(self)
            vs = fetch_vs(ref)
            return None if vs is None else set(expand(vs, fetch_vs, fetch_cs))

        return expanding(expander)

    def compartment(self, req: Any, ctype: str, cid: str, rtype: str) -> Any:
        if rtype == AUDIT and ctype == "Patient":
            return trail().compartment(self, req, cid)
        with self._valuesets():
            return self.services.search.compartment(req, self, ctype, cid, rtype)

    def everything(self, req: Any, pid: str) -> Any:
        return self.services.search.everything(req, self, pid)

    def history(self, req: Any, rtype: str | None = None, rid: str | None = None) -> Any:
        if rtype == AUDIT:
            return trail().history(self, req, rid)
        from service.repository.history import history

        return history(self, req, rtype, rid)
