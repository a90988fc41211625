"""The service's Questionnaires in the record: published at start, resolved by canonical `url|version`.

The packaged JSON files (fhir_profiles/questionnaires/) are the source of the forms. They are
published as Questionnaire resources with fixed ids (the joint assessment is
Questionnaire/joint-assessment): at process start (`ensure_questionnaires`, from `build_services`,
best effort), by `sharedcare demo load`, and in the request transaction of `$start-assessment` when
missing (so an emptied database still works). Publication is idempotent: a form is written when its id
is absent or when the packaged version is not among the stored versions (a new release of the
service); a version published with PUT by an operator is never overwritten by an older file.

A new version of a form becomes a new version of the same Questionnaire resource; a response pins
`questionnaire = url|version` and is always validated against the version it pinned: `resolve` finds
it in the current version, the resource's history, or the packaged files
(`<id>.json`, and `<id>-<version>.json` for older releases kept in the package). A published version
never changes (publish a new version string instead): `FormHooks` refuses a write that would change
the items of a published version (409), move a form to another id or url, leave out its version, or
publish a form with design faults (fhir_profiles.questionnaire_validation.check_questionnaire).
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib.resources import files
from typing import Any

from fhir_profiles.questionnaire_validation import check_questionnaire
from fhir_profiles.questionnaires import JOINT_ASSESSMENT_URL
from service.fhir.outcome import OperationOutcomeError
from service.repository import Change, Repository, StorageUnavailable

log = logging.getLogger("sharedcare.workflows")

PACKAGE = "fhir_profiles.questionnaires"


@cache
def packaged() -> dict[tuple[str, str], dict[str, Any]]:
    """(url, version) -> Questionnaire, for every JSON file in the package."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in files(PACKAGE).iterdir():
        if entry.name.endswith(".json"):
            q = json.loads(entry.read_text(encoding="utf-8"))
            if q.get("resourceType") == "Questionnaire":
                out[(q["url"], q["version"])] = q
    return out


def current_packaged() -> list[dict[str, Any]]:
    """The newest packaged version of each form (the one named `<id>.json`)."""
    out = []
    for entry in files(PACKAGE).iterdir():
        if entry.name.endswith(".json"):
            q = json.loads(entry.read_text(encoding="utf-8"))
            if q.get("resourceType") == "Questionnaire" and entry.name == f"{q['id']}.json":
                out.append(q)
    return out


def ids_by_url() -> dict[str, str]:
    return {url: q["id"] for (url, _v), q in packaged().items()}


def is_joint(canonical: Any) -> bool:
    return isinstance(canonical, str) and canonical.split("|", 1)[0] == JOINT_ASSESSMENT_URL


def version_key(version: Any) -> tuple[tuple[int, int | str], ...]:
    """An order for version strings: dotted numbers compare as numbers ("1.10.0" > "1.9.2")."""
    parts = str(version or "").replace("-", ".").split(".")
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def publish(server: Repository) -> int:
    """Write the packaged forms the record lacks (with the server's own repository); returns how many were
    written. A packaged version is written when the form is absent (or deleted), or when it is newer than the
    stored current version and was never stored: an operator's newer version (published with PUT) is never
    replaced by an older file, and a version once stored is not written again."""
    written = 0
    for q in current_packaged():
        cur = server.get("Questionnaire", q["id"])
        if cur is not None:
            if version_key(cur.json().get("version")) >= version_key(q["version"]):
                continue
            if any(v.content and json.loads(v.content).get("version") == q["version"]
                   for v in server.versions("Questionnaire", q["id"])):
                continue
        server.update("Questionnaire", q["id"], json.loads(json.dumps(q)), if_match=cur.version if cur else None)
        written += 1
    return written


def ensure_questionnaires(services: Any) -> dict[str, int]:
    """Publish the packaged forms in their own transaction (idempotent; safe on many processes)."""
    try:
        with Repository.job(services) as server:
            return {"questionnaires published": publish(server)}
    except OperationOutcomeError as err:  # another process published it at the same moment
        log.info("questionnaires not published here: %s", err.diagnostics)
    except StorageUnavailable as exc:  # e.g. the database is not migrated yet
        log.warning("questionnaires not published at start (%s); they will be on first use", exc)
    return {"questionnaires published": 0}


def ensure_in_session(repo: Repository) -> None:
    """Publish missing forms inside the current request's transaction (as the server)."""
    server = repo.server()
    for q in current_packaged():
        if server.get("Questionnaire", q["id"]) is None:
            publish(server)
            return


def current(repo: Repository, url: str = JOINT_ASSESSMENT_URL) -> dict[str, Any]:
    """The form's current version as stored (published on demand)."""
    rid = ids_by_url().get(url)
    if rid is None:
        raise OperationOutcomeError(422, "not-found", f"Questionnaire {url!r} is not a form of this service")
    ensure_in_session(repo)
    return repo.server().read("Questionnaire", rid).json()


def resolve(repo: Repository, canonical: str) -> dict[str, Any]:
    """The Questionnaire a response pinned (`url|version`, or `url` for the current version)."""
    url, _, version = canonical.partition("|")
    rid = ids_by_url().get(url)
    if rid is None:
        raise OperationOutcomeError(422, "not-found", f"Questionnaire {url!r} is not a form of this service",
                                    expression=("QuestionnaireResponse.questionnaire",))
    server = repo.server()  # the form a response pinned is the server's reference data, whoever asks
    cur = server.get("Questionnaire", rid)
    if cur is not None and cur.content is not None:
        q = _parsed(cur.content)
        if not version or q.get("version") == version:
            return q
    if version:  # an earlier version, also when the form was deleted since
        for v in server.versions("Questionnaire", rid):
            if v.content is not None:
                old = _parsed(v.content)
                if old.get("version") == version:
                    return old
    if version and (url, version) in packaged():
        return packaged()[(url, version)]
    if not version:
        newest = next((q for q in current_packaged() if q["url"] == url), None)
        if newest is not None:
            return newest
    raise OperationOutcomeError(422, "not-found", f"Questionnaire {canonical!r} is not known (no such version)",
                                expression=("QuestionnaireResponse.questionnaire",))


_parsed_cache: dict[bytes, dict[str, Any]] = {}


def _parsed(content: bytes) -> dict[str, Any]:
    """Parsed stored Questionnaire versions, keyed by their bytes (immutable); callers must not change them."""
    found = _parsed_cache.get(content)
    if found is None:
        if len(_parsed_cache) > 32:
            _parsed_cache.clear()
        found = _parsed_cache[content] = json.loads(content)
    return found


def published(repo: Repository, url: str, version: str) -> dict[str, Any] | None:
    """The published `url|version` of one of the service's forms, or None."""
    try:
        return resolve(repo, f"{url}|{version}")
    except OperationOutcomeError:
        return None


class FormHooks:
    """The rule for writes of the service's forms (Questionnaire), from plain REST: a form keeps its id
    and url, every version has a version string, and a published version never changes its items (publish
    a new version instead), so every response stays valid against the version it pinned. Its status (for
    example retired) and descriptive elements may change."""

    def before(self, repo: Repository, rtype: str, before: dict[str, Any] | None, after: dict[str, Any],
               change: Change) -> None:
        urls = ids_by_url()
        url, rid = after.get("url"), after.get("id") or (before or {}).get("id")
        own_url = next((u for u, i in urls.items() if i == rid), None)
        if own_url is None and url not in urls:
            return  # not a form of this service
        if own_url is not None and url != own_url:
            raise OperationOutcomeError(422, "business-rule", f"Questionnaire/{rid} is the form {own_url}; its url "
                                        "cannot change", expression=("Questionnaire.url",))
        if own_url is None:
            raise OperationOutcomeError(422, "business-rule", f"The form {url} is kept as Questionnaire/{urls[url]}; "
                                        "publish its versions there", expression=("Questionnaire.url",))
        version = after.get("version")
        if not isinstance(version, str) or not version.strip():
            raise OperationOutcomeError(422, "required", f"Every version of the form {url} needs a version string",
                                        expression=("Questionnaire.version",))
        problems = check_questionnaire(after)
        if problems:
            raise OperationOutcomeError(422, "business-rule", f"The form {url}|{version} has design problems: "
                                        + "; ".join(problems[:10]), expression=("Questionnaire.item",))
        existing = published(repo, url, version)
        if existing is not None and existing.get("item") != after.get("item"):
            raise OperationOutcomeError(
                409, "business-rule", f"Version {version} of the form {url} is published and answered against: "
                "its items cannot change. Publish the change as a new version", expression=("Questionnaire.item",))

    def after(self, repo: Repository, stored: Any, before: dict[str, Any] | None, change: Change) -> None:
        return None
