"""ValueSet expansion and code membership over the ValueSets and CodeSystems the server holds (pure: the caller
hands in how to fetch them, through the repository).

What is expanded (https://hl7.org/fhir/R4/valueset.html#compose): `compose.include` / `exclude` with `concept`
lists, whole code systems (`system` alone: every concept of a CodeSystem held here, content `complete`),
filters on the CodeSystem's hierarchy (`concept` `is-a`, `descendent-of`, `is-not-a`, and `in`; `=` on `code`),
and other ValueSets (`valueSet`, intersected); a ValueSet that carries only an `expansion` is used as it is.
Besides what is stored, the ValueSets of the base specification's required bindings (data/bindings.json) are
known by their canonical URL. What cannot be expanded (a code system not held here, an unsupported filter) is
an error naming it, never a silently short list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.fhir.outcome import OperationOutcomeError
from service.validation import bindings

MAX_CODES = 10_000
MAX_DEPTH = 8
Fetch = Callable[[str], dict[str, Any] | None]


class NotExpandable(OperationOutcomeError):
    def __init__(self, text: str, status: int = 422, code: str = "not-supported") -> None:
        super().__init__(status, code, text)


def builtin_valueset(url: str) -> dict[str, Any] | None:
    """A required-binding ValueSet of the base specification, as a ValueSet resource (codes, no displays)."""
    found = bindings.valuesets().get(url.split("|", 1)[0])
    if found is None:
        return None
    name, _all, systems = found
    return {"resourceType": "ValueSet", "url": url.split("|", 1)[0], "name": name, "status": "active",
            "compose": {"include": [{"system": s, "concept": [{"code": c} for c in sorted(codes)]}
                                    for s, codes in sorted(systems.items())]}}


def _concepts(cs: dict[str, Any]) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """(code, display, ancestors) of every concept of a CodeSystem."""
    out: list[tuple[str, str | None, tuple[str, ...]]] = []

    def walk(items: Any, ancestors: tuple[str, ...]) -> None:
        for c in items or ():
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                out.append((c["code"], c.get("display"), ancestors))
                walk(c.get("concept"), (*ancestors, c["code"]))
    walk(cs.get("concept"), ())
    return out


def _include(inc: dict[str, Any], fetch_vs: Fetch, fetch_cs: Fetch, depth: int
             ) -> dict[tuple[str, str], str | None]:
    found: dict[tuple[str, str], str | None] | None = None
    for vs_url in inc.get("valueSet") or ():
        vs = fetch_vs(vs_url)
        if vs is None:
            raise NotExpandable(f"the ValueSet {vs_url!r} it includes is not held on this server")
        sub = expand(vs, fetch_vs, fetch_cs, depth + 1)
        found = sub if found is None else {k: v for k, v in found.items() if k in sub}
    system = inc.get("system")
    if not isinstance(system, str):
        return found or {}
    codes: dict[tuple[str, str], str | None] = {}
    if inc.get("concept"):
        cs = None
        for c in inc["concept"]:
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                codes[(system, c["code"])] = c.get("display")
        if any(v is None for v in codes.values()):
            cs = fetch_cs(system)
            if cs is not None:
                displays = {code: display for code, display, _ in _concepts(cs)}
                codes = {k: v or displays.get(k[1]) for k, v in codes.items()}
    else:
        cs = fetch_cs(system)
        if cs is None:
            raise NotExpandable(f"the code system {system!r} is not held on this server, so its codes cannot "
                                "be listed")
        if cs.get("content") not in (None, "complete"):
            raise NotExpandable(f"the code system {system!r} held here is not complete (content "
                                f"{cs.get('content')!r})")
        for code, display, ancestors in _concepts(cs):
            if all(_passes(f, code, ancestors) for f in inc.get("filter") or ()):
                codes[(system, code)] = display
    if found is not None:
        codes = {k: v for k, v in codes.items() if k in found}
    return codes


def _passes(f: dict[str, Any], code: str, ancestors: tuple[str, ...]) -> bool:
    prop, op, value = f.get("property"), f.get("op"), f.get("value")
    if prop == "concept" and op == "is-a":
        return code == value or value in ancestors
    if prop == "concept" and op == "descendent-of":
        return value in ancestors
    if prop == "concept" and op == "is-not-a":
        return not (code == value or value in ancestors)
    if prop in ("concept", "code") and op == "in":
        return code in str(value).split(",")
    if prop in ("concept", "code") and op == "=":
        return code == value
    raise NotExpandable(f"the filter {prop} {op} {value!r} is not supported (is-a, descendent-of, is-not-a, in "
                        "and = on concept)")


def expand(vs: dict[str, Any], fetch_vs: Fetch, fetch_cs: Fetch, depth: int = 0
           ) -> dict[tuple[str, str], str | None]:
    """(system, code) -> display of every code in the ValueSet."""
    if depth > MAX_DEPTH:
        raise NotExpandable("the ValueSet includes other ValueSets too deeply (or in a circle)")
    compose = vs.get("compose")
    if not isinstance(compose, dict):
        contains = (vs.get("expansion") or {}).get("contains")
        if contains is None:
            raise NotExpandable(f"the ValueSet {vs.get('url') or vs.get('id')!r} has neither a compose nor an "
                                "expansion")
        out: dict[tuple[str, str], str | None] = {}

        def walk(items: Any) -> None:
            for c in items or ():
                if isinstance(c, dict):
                    if isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
                        out[(c["system"], c["code"])] = c.get("display")
                    walk(c.get("contains"))
        walk(contains)
        return out
    codes: dict[tuple[str, str], str | None] = {}
    for inc in compose.get("include") or ():
        if isinstance(inc, dict):
            codes.update(_include(inc, fetch_vs, fetch_cs, depth))
        if len(codes) > MAX_CODES:
            raise NotExpandable(f"the expansion has more than {MAX_CODES} codes", 400, "too-costly")
    for exc in compose.get("exclude") or ():
        if isinstance(exc, dict):
            for key in _include(exc, fetch_vs, fetch_cs, depth):
                codes.pop(key, None)
    return codes


def code_in_system(cs: dict[str, Any], code: str) -> str | None | bool:
    """The display of `code` in the CodeSystem (None when it has none), or False when it is not there."""
    for c, display, _ in _concepts(cs):
        if c == code:
            return display
    return False


def fetchers(repo: Any) -> tuple[Fetch, Fetch]:
    """How to fetch ValueSets and CodeSystems through the request's repository (what the caller may see), by
    canonical URL (`url[|version]`) or as `ValueSet/[id]`; the base specification's required-binding ValueSets
    besides. Memoised for the request."""
    memo: dict[tuple[str, str], dict[str, Any] | None] = repo.memo.setdefault("terminology", {})

    def fetch(rtype: str, ref: str) -> dict[str, Any] | None:
        key = (rtype, ref)
        if key in memo:
            return memo[key]
        found: dict[str, Any] | None = None
        if ref.startswith(rtype + "/"):
            stored = repo.get(rtype, ref.split("/", 1)[1])
            found = stored.json() if stored is not None and not stored.deleted else None
        else:
            url, _, version = ref.partition("|")
            rows = [s.json() for s in repo.find(rtype, [("url", url)])]
            rows = [r for r in rows if r.get("url") == url and (not version or r.get("version") == version)]
            rows.sort(key=lambda r: str(r.get("version") or ""), reverse=True)
            found = rows[0] if rows else None
            if found is None and rtype == "ValueSet":
                found = builtin_valueset(ref)
        memo[key] = found
        return found

    return (lambda ref: fetch("ValueSet", ref)), (lambda ref: fetch("CodeSystem", ref))
