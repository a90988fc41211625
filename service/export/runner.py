"""Running one export job: as the client that asked, page by page through the Repository.

Every page is a search the client could have run itself (`repo.search` for a type, `repo.compartment` for a Group
member), in its own read unit with a Repository built from the job's context: the same scopes, purposes of use,
care relationships, objections, National Data Opt-out and SQL access filter as any request; only what that
search returns is written. Pages are keyset-paged (`_count` = SHAREDCARE_EXPORT_PAGE_SIZE, `_total=none`), and
lines go to the database in chunks as they fill, so the worker holds one page and one chunk per open file.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy.exc import DBAPIError

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.db import timed_out
from service.export import caller, jobs
from service.export.spec import ExportSpec, filter_params, level_types, search_params
from service.export.writer import FileSet
from service.fhir.outcome import OperationOutcomeError
from service.fhir.request import FhirRequest
from service.metrics import observe_replica_read
from service.ownership import patient_data_types
from service.repository import Repository

log = logging.getLogger("sharedcare.export")

STRICT = {"prefer": "handling=strict"}  # an unknown parameter in a _typeFilter is an error, never ignored
_PATIENT_REF = re.compile(rb'"reference":"Patient/([A-Za-z0-9\-.]{1,64})"')
Search = Callable[[Repository, FhirRequest], Any]


class Stopped(Exception):
    """The worker is shutting down."""


UNIT_SECONDS = 2.0  # pages share a read unit (and its Repository: the policy's condition is built once) this long


class Units:
    """The read unit (and the Repository on it) the export's searches run in, renewed every UNIT_SECONDS: the
    policy's SQL condition is built once per unit rather than per page, and no unit outlives SQLite's per-unit
    statement timeout. The Repository's record is emptied after every page (it would otherwise grow with the
    export)."""

    def __init__(self, services: Any, ctx: RequestContext) -> None:
        self.services, self.ctx = services, ctx
        self._stack: ExitStack | None = None
        self._repo: Repository | None = None
        self._opened = 0.0
        # the read replica is used once it holds every commit made before the job began (service/replica.py)
        self.started = time.monotonic()
        self.on_replica = False

    def repo(self) -> Repository:
        if self._repo is None or time.monotonic() - self._opened > UNIT_SECONDS:
            self.close()
            self._stack = ExitStack()
            replica = self.services.db.replica
            # (the first unit waits a moment for the replica to replay what was committed before the job began)
            self.on_replica = replica is not None and replica.wait(self.started, 0.0 if self._opened else 2.0)
            if replica is not None:
                observe_replica_read(self.on_replica)
            conn = self._stack.enter_context(self.services.db.read(replica=self.on_replica))
            self._repo = Repository(self.services, conn, self.ctx, RequestRecord(interaction="operation:export"))
            self._opened = time.monotonic()
        return self._repo

    def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._repo = self._stack, None, None
            stack.close()


def pages(services: Any, units: Units, path: str, params: list[tuple[str, str]], search: Search
          ) -> Iterator[tuple[list[Any], list[str]]]:
    """(resources, people whose data they are) page by page: each page one search, keyset-paged."""
    size = str(services.settings.export_page_size)
    cursor: str | None = None
    while True:
        repo = units.repo()
        p = [*params, ("_count", size), ("_total", "none")] + ([("_cursor", cursor)] if cursor else [])
        try:
            bundle = orjson.loads(search(repo, FhirRequest("GET", path, p, dict(STRICT))).body)
        except DBAPIError as exc:  # the replica failed the page: the primary runs it again
            if not units.on_replica or timed_out(exc):
                raise
            units.services.db.replica.failed(exc)
            units.close()
            repo = units.repo()
            bundle = orjson.loads(search(repo, FhirRequest("GET", path, p, dict(STRICT))).body)
        found = [e["resource"] for e in bundle.get("entry") or () if (e.get("search") or {}).get("mode") == "match"]
        people = list(repo.record.patients)
        repo.record.patients.clear()
        repo.record.entities.clear()
        repo.record.notes.clear()
        yield found, people
        nxt = next((link["url"] for link in bundle.get("link") or () if link.get("relation") == "next"), None)
        cursor = dict(parse_qsl(urlsplit(nxt).query)).get("_cursor") if nxt else None
        if not cursor:
            return


def types_for(repo: Repository, spec: ExportSpec) -> list[str]:
    """The types this export covers for this caller: asked-for types it may not search are refused (403, at
    kick-off), the level's default types it may not search are left out."""
    wanted = level_types(spec, patient_data_types())
    if spec.types is not None:
        for t in wanted:
            repo.require("search-type", t)
        return wanted
    return [t for t in wanted if repo.may("search-type", t)]


def check(repo: Repository, spec: ExportSpec) -> None:
    """At kick-off, on the request's own repository: the types asked for, the Group, and every _typeFilter (run
    once, for one row), so a bad request is a 400/403/404 now rather than a failed job later."""
    types_for(repo, spec)
    base = search_params(spec)
    for rtype, queries in spec.filters.items():
        for q in queries:
            try:
                repo.search(FhirRequest("GET", rtype, [*filter_params(q), *base, ("_count", "1"), ("_total", "none")],
                                        dict(STRICT)), rtype)
            except OperationOutcomeError as err:
                raise OperationOutcomeError(err.status, err.issues[0].code if err.issues else "invalid",
                                            f"_typeFilter {rtype}?{q}: {err.diagnostics}") from None
    if spec.level == "group":
        members(repo, spec)


def members(repo: Repository, spec: ExportSpec) -> list[str]:
    """The Group's Patient members (read as the caller: a Group it may not see is a missing one)."""
    assert spec.group_id is not None
    group = repo.read("Group", spec.group_id).json()
    out = []
    for m in group.get("member") or ():
        ref = ((m or {}).get("entity") or {}).get("reference") or ""
        if ref.startswith("Patient/") and not m.get("inactive"):
            out.append(ref.split("/", 1)[1])
    return list(dict.fromkeys(out))


class Run:
    def __init__(self, services: Any, job: jobs.Job, stop: threading.Event | None = None) -> None:
        self.services, self.job, self.stop = services, job, stop
        s = services.settings
        self.lease = s.export_lease_seconds
        self.spec = ExportSpec.from_json(job.spec)
        self.ctx = caller.context(services, job.caller, request_id=job.id)
        self.files = FileSet(services.db, job, self.lease, s.export_file_resources)
        self.units = Units(services, self.ctx)
        self._renewed = time.monotonic()

    def _tick(self, rtype: str) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped
        if time.monotonic() - self._renewed > self.lease / 4:
            jobs.renew(self.services.db, self.job, self.lease, self.files.progress(rtype), self.files.exported)
            self._renewed = time.monotonic()

    def run(self) -> int:
        if caller.revoked(self.services, self.job.caller):
            raise OperationOutcomeError(403, "forbidden", "The access token that asked for this export has been "
                                        "revoked")
        with self.services.db.read() as conn:
            repo = Repository(self.services, conn, self.ctx, RequestRecord())
            types = types_for(repo, self.spec)
            group = members(repo, self.spec) if self.spec.level == "group" else []
        try:
            if self.spec.level == "group":
                self._group(types, group)
            else:
                for rtype in types:
                    self._type(rtype)
        finally:
            self.units.close()
        self.files.close_all()
        return self.files.exported

    def _type(self, rtype: str) -> None:
        base = search_params(self.spec)
        queries = self.spec.filters.get(rtype)
        seen: set[str] | None = set() if queries and len(queries) > 1 else None  # (filters are ORed: once each)

        def search(repo: Repository, req: FhirRequest) -> Any:
            return repo.search(req, rtype)

        for criteria in ([filter_params(q) for q in queries] if queries else [[]]):
            for found, patients in pages(self.services, self.units, rtype, [*criteria, *base], search):
                self._tick(rtype)
                for res in found:
                    if seen is not None:
                        if res["id"] in seen:
                            continue
                        seen.add(res["id"])
                    self.files.add(rtype, orjson.dumps(res))
                self.files.end_page((rtype,), patients)
        self.files.close(rtype)

    def _group(self, types: list[str], group: list[str]) -> None:
        base = search_params(self.spec)
        plain = [t for t in types if t not in self.spec.filters]
        shared: set[tuple[str, str]] = set()  # resources of several members (each exported once)
        for pid in group:
            streams: list[tuple[str, list[tuple[str, str]]]] = []
            if plain:
                streams.append(("*", [("_type", ",".join(plain)), *base]))
            for rtype in types:
                for q in self.spec.filters.get(rtype, ()):
                    streams.append((rtype, [*filter_params(q), *base]))
            for target, params in streams:
                def search(repo: Repository, req: FhirRequest, target: str = target, pid: str = pid) -> Any:
                    return repo.compartment(req, "Patient", pid, target)

                for found, patients in pages(self.services, self.units, f"Patient/{pid}/{target}", params, search):
                    self._tick(target)
                    touched = set()
                    for res in found:
                        line = orjson.dumps(res)
                        if len(set(_PATIENT_REF.findall(line))) > 1 or (target != "*" and len(
                                self.spec.filters.get(target, ())) > 1):
                            key = (res["resourceType"], res["id"])
                            if key in shared:
                                continue
                            shared.add(key)
                        self.files.add(res["resourceType"], line)
                        touched.add(res["resourceType"])
                    self.files.end_page(touched, patients)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """While a job runs, the objects the process held before it (definitions, modules, caches: about 100,000) sit
    out the garbage collector's full passes (`gc.freeze`), and are handed back after it (`gc.unfreeze`: nothing is
    kept from collection for longer than the job). Each page parses a searchset Bundle of tens of thousands of
    objects, which set off a full collection over the whole heap about once a page: two thirds of the time spent
    parsing it, a quarter of the worker's own time."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_job(services: Any, job: jobs.Job, stop: threading.Event | None = None) -> str:
    """Run a claimed job to its end: done, failed (a refusal: the caller may no longer do this), given back to the
    queue (the worker stopping; the database failing), or dropped (it was cancelled). Returns what happened."""
    ttl = services.settings.export_ttl_seconds
    try:
        with frozen_heap():
            exported = Run(services, job, stop).run()
        jobs.finish(services.db, job, ttl, exported)
        log.info("export %s done: %d resources", job.id, exported)
        return "done"
    except jobs.LostJob:
        log.info("export %s is no longer this worker's (cancelled or taken over)", job.id)
        return "lost"
    except Stopped:
        jobs.release(services.db, job)
        return "stopped"
    except OperationOutcomeError as err:
        log.warning("export %s failed: %s", job.id, err.diagnostics)
        jobs.fail(services.db, job, err.diagnostics, ttl)
        return "failed"
    except Exception:
        log.exception("export %s broke; it goes back to the queue", job.id)
        try:
            jobs.release(services.db, job)
        except Exception:  # (the database is away: the lease runs out and the job is claimed again)
            log.exception("export %s could not be given back; its lease will run out", job.id)
        return "released"
