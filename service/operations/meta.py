"""$meta, $meta-add and $meta-delete (https://hl7.org/fhir/R4/resource-operations.html).

- `GET|POST [base]/$meta`, `[base]/[type]/$meta`: the profiles, tags and security labels in use on the current
  resources the caller may see (service/repository/meta.py); `[base]/[type]/[id]/$meta`: that resource's meta
  (404 for what the caller may not see, as a read).
- `POST [base]/[type]/[id]/$meta-add` and `$meta-delete` with Parameters `meta` (valueMeta): profiles, tags and
  security labels added or removed as sets (a tag or label is its system and code, a profile its URL; display and
  version are ignored in matching; removing what is not there is not an error). Answers Parameters `return`
  (valueMeta), the resulting meta.

Versions: FHIR R4 (4.0.1) no longer says these operations leave the version alone (STU3 did; R4's Meta says its
changes "might not always be associated with version changes"). Here a change makes a new version through the
same write path as PATCH (the policy, the type's rules, validation, history and the audit see it, and earlier
versions stay as they were seen); asking for what is already so changes nothing and writes no version.
"""

from __future__ import annotations

from typing import Any

import orjson

from service.fhir.outcome import OperationOutcomeError, bad_request
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository
from service.repository.meta import meta_in_use

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-{}"
APPEND_ONLY = {"AuditEvent"}


def _answer(meta: dict[str, Any]) -> FhirResponse:
    body = {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}
    return FhirResponse(200, orjson.dumps(body))


def meta(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    if rid is not None:
        assert rtype is not None
        stored = repo.read(rtype, rid)
        return _answer(stored.json().get("meta") or {})
    return _answer(meta_in_use(repo, rtype or None))


def _input_meta(req: FhirRequest) -> dict[str, Any]:
    body = req.json_body()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("The operation takes a Parameters resource with one parameter 'meta' (valueMeta)",
                          code="structure")
    found = [p for p in body.get("parameter") or () if isinstance(p, dict) and p.get("name") == "meta"]
    if len(found) != 1 or not isinstance(found[0].get("valueMeta"), dict):
        raise bad_request("The operation takes exactly one parameter 'meta' with a valueMeta", code="required")
    value: dict[str, Any] = found[0]["valueMeta"]
    for kind in ("tag", "security"):
        for c in value.get(kind) or ():
            if not isinstance(c, dict) or not c.get("code"):
                raise bad_request(f"meta.{kind}: each entry must be a Coding with a code, not {c!r}")
    for p in value.get("profile") or ():
        if not isinstance(p, str) or not p.strip():
            raise bad_request(f"meta.profile: each entry must be a canonical URL, not {p!r}")
    for kind in ("tag", "security", "profile"):
        if kind in value and not isinstance(value[kind], list):
            raise bad_request(f"meta.{kind} must be a list")
    return value


def _key(c: dict[str, Any]) -> tuple[str, str]:
    return str(c.get("system") or ""), str(c.get("code") or "")


class _Unchanged(Exception):
    pass


def _changed(current: dict[str, Any], given: dict[str, Any], adding: bool) -> dict[str, Any]:
    out = dict(current)
    for kind in ("tag", "security"):
        have = list(current.get(kind) or [])
        keys = {_key(c) for c in given.get(kind) or ()}
        if adding:
            present = {_key(c) for c in have}
            for c in given.get(kind) or ():
                if _key(c) not in present:
                    present.add(_key(c))
                    have.append(c)
        else:
            have = [c for c in have if _key(c) not in keys]
        if have:
            out[kind] = have
        else:
            out.pop(kind, None)
    profiles = list(current.get("profile") or [])
    wanted = list(given.get("profile") or [])
    if adding:
        profiles += [p for i, p in enumerate(wanted) if p not in profiles and p not in wanted[:i]]
    else:
        profiles = [p for p in profiles if p not in wanted]
    if profiles:
        out["profile"] = profiles
    else:
        out.pop("profile", None)
    return out


def _change(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None, adding: bool) -> FhirResponse:
    assert rtype is not None and rid is not None
    if rtype in APPEND_ONLY:
        raise OperationOutcomeError(405, "not-supported", f"{rtype}s are append-only: their meta cannot be changed",
                                    headers={"Allow": "GET"})
    given = _input_meta(req)

    def apply(before: dict[str, Any]) -> dict[str, Any]:
        current = before.get("meta") or {}
        after = _changed(current, given, adding)
        if after == current:
            raise _Unchanged
        return {**before, "meta": after}

    try:
        stored = repo.patch(rtype, rid, apply, if_match=req.if_match())
    except _Unchanged:
        stored = repo.read(rtype, rid)
    return _answer(stored.json().get("meta") or {})


def meta_add(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    return _change(req, repo, rtype, rid, adding=True)


def meta_delete(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    return _change(req, repo, rtype, rid, adding=False)


OPERATIONS = (
    Operation(name="meta", level="system", types=(), methods=("GET", "POST"), handler=meta,
              definition=DEFINITION.format("meta")),
    Operation(name="meta", level="type", types=("*",), methods=("GET", "POST"), handler=meta,
              definition=DEFINITION.format("meta")),
    Operation(name="meta", level="instance", types=("*",), methods=("GET", "POST"), handler=meta,
              definition=DEFINITION.format("meta")),
    Operation(name="meta-add", level="instance", types=("*",), methods=("POST",), handler=meta_add, writes=True,
              definition=DEFINITION.format("meta-add")),
    Operation(name="meta-delete", level="instance", types=("*",), methods=("POST",), handler=meta_delete,
              writes=True, definition=DEFINITION.format("meta-delete")),
)
