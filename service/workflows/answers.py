"""Answer units of a QuestionnaireResponse: what one author sets, what a merge compares.

Pure functions over JSON dicts. A *unit* is the smallest part of a response that has one author:
- a question item outside any repeating group (its answers, including any nested answer.item), or
- a repeating group as a whole (all its instances: e.g. every carer in `carers.carer`).
Non-repeating groups are only containers: they are rebuilt from the units they hold. Units are named
by linkId, which is unique in a Questionnaire, so a unit's linkId names it in the whole response.

Comparisons ignore the server's authorship extension (codes.ANSWER_AUTHOR), so re-sending an answer
unchanged is not a change.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import orjson

from service.workflows.codes import ANSWER_AUTHOR

Units = dict[str, list[dict[str, Any]]]


def unit_of(questionnaire: dict[str, Any]) -> dict[str, str]:
    """Every question or group linkId inside a unit -> that unit's linkId (questionnaire order)."""
    out: dict[str, str] = {}

    def walk(items: Iterable[dict[str, Any]], unit: str | None) -> None:
        for it in items:
            lid, kind = it.get("linkId"), it.get("type")
            if not isinstance(lid, str) or kind == "display":
                continue
            here = unit
            if here is None and (kind != "group" or it.get("repeats")):
                here = lid
            if here is not None:
                out[lid] = here
            walk(it.get("item") or (), here)

    walk(questionnaire.get("item") or (), None)
    return out


def unit_ids(questionnaire: dict[str, Any]) -> list[str]:
    """The units of the form, in questionnaire order."""
    seen: dict[str, None] = {}
    for unit in unit_of(questionnaire).values():
        seen.setdefault(unit, None)
    return list(seen)


def section(unit: str) -> str:
    """The section of a unit (linkIds are "<section>.<topic>.<question>")."""
    return unit.split(".", 1)[0]


def has_content(item: dict[str, Any]) -> bool:
    for ans in item.get("answer") or ():
        if isinstance(ans, dict) and (any(k.startswith("value") for k in ans)
                                      or any(has_content(c) for c in ans.get("item") or ())):
            return True
    return any(has_content(c) for c in item.get("item") or () if isinstance(c, dict))


class UnknownItems(ValueError):
    """Items that are not units of the form: (linkId, problem) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(p for _, p in problems))
        self.problems = problems


def collect(questionnaire: dict[str, Any], response: dict[str, Any] | None, *, strict: bool = False) -> Units:
    """The response's units with content, unit linkId -> its items (copies). Container groups are walked
    wherever they sit. strict=True raises UnknownItems for linkIds that are not in the form or that sit
    inside a repeating group without it (a repeating group is sent whole)."""
    units = unit_of(questionnaire)
    index = _index(questionnaire)
    out: Units = {}
    problems: list[tuple[str, str]] = []

    def walk(items: Any) -> None:
        for it in items or ():
            if not isinstance(it, dict):
                continue
            lid = it.get("linkId")
            if lid in units and units[lid] == lid:
                if has_content(it):
                    out.setdefault(lid, []).append(copy.deepcopy(it))
            elif lid in units:
                problems.append((lid, (f"item '{lid}' belongs to the repeating group '{units[lid]}': "
                                      "send the whole group (every instance)")))
            elif lid in index and index[lid].get("type") == "group":
                walk(it.get("item"))
            elif lid in index:
                continue  # display items carry nothing
            else:
                problems.append((str(lid), (f"linkId '{lid}' is not in Questionnaire "
                                           f"'{questionnaire.get('url')}|{questionnaire.get('version')}'")))

    walk((response or {}).get("item"))
    if strict and problems:
        raise UnknownItems(problems)
    return out


def build(questionnaire: dict[str, Any], units: Units) -> list[dict[str, Any]]:
    """The response item tree in questionnaire order from units; empty containers are left out."""
    unit_map = unit_of(questionnaire)

    def walk(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for it in items:
            lid = it.get("linkId")
            if not isinstance(lid, str):
                continue
            if unit_map.get(lid) == lid:
                out.extend(units.get(lid) or ())
            elif it.get("type") == "group" and lid not in unit_map:
                kids = walk(it.get("item") or ())
                if kids:
                    group: dict[str, Any] = {"linkId": lid}
                    if it.get("text"):
                        group["text"] = it["text"]
                    group["item"] = kids
                    out.append(group)
        return out

    return walk(questionnaire.get("item") or ())


def strip_author(item: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in item.items() if k != "extension"}
    exts = [e for e in item.get("extension") or () if not (isinstance(e, dict) and e.get("url") == ANSWER_AUTHOR)]
    if exts:
        out["extension"] = exts
    return out


def content(items: list[dict[str, Any]] | None) -> bytes:
    """A comparable form of a unit's items (without authorship)."""
    return orjson.dumps([strip_author(i) for i in items or ()], option=orjson.OPT_SORT_KEYS)


def author(items: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The authorship extension of a unit (of its first item), or None."""
    for it in items or ():
        for ext in it.get("extension") or ():
            if isinstance(ext, dict) and ext.get("url") == ANSWER_AUTHOR:
                return ext
    return None


def stamp(items: list[dict[str, Any]], ext: dict[str, Any]) -> list[dict[str, Any]]:
    """The unit's items carrying `ext` as their authorship (replacing any other)."""
    out = []
    for it in items:
        it = strip_author(it)
        it["extension"] = [ext, *(it.get("extension") or ())]
        # keep linkId first for readability
        out.append({"linkId": it["linkId"], **{k: v for k, v in it.items() if k != "linkId"}})
    return out


def answered_questions(items: Iterable[dict[str, Any]]) -> int:
    """How many question items (at any depth) carry at least one answer value."""
    n = 0
    for it in items:
        if not isinstance(it, dict):
            continue
        answers = [a for a in it.get("answer") or () if isinstance(a, dict)]
        if any(any(k.startswith("value") for k in a) for a in answers):
            n += 1
        for a in answers:
            n += answered_questions(a.get("item") or ())
        n += answered_questions(it.get("item") or ())
    return n


def _index(questionnaire: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(items: Iterable[dict[str, Any]]) -> None:
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("linkId"), str):
                out[it["linkId"]] = it
                walk(it.get("item") or ())

    walk(questionnaire.get("item") or ())
    return out


def values(units: Units, link_id: str) -> list[Any]:
    """Every answer value of `link_id` found in the units (any depth, any instance)."""
    found: list[Any] = []

    def walk(items: Iterable[dict[str, Any]]) -> None:
        for it in items:
            if not isinstance(it, dict):
                continue
            for a in it.get("answer") or ():
                if not isinstance(a, dict):
                    continue
                if it.get("linkId") == link_id:
                    found.extend(v for k, v in a.items() if k.startswith("value"))
                walk(a.get("item") or ())
            walk(it.get("item") or ())

    for items in units.values():
        walk(items)
    return found


def value(units: Units, link_id: str) -> Any:
    found = values(units, link_id)
    return found[0] if found else None


def contributions(units: Units) -> list[dict[str, Any]]:
    """Each unit's authorship as a dict: unit, author (Reference), organisation, profession, source, revision."""
    from service.workflows.codes import part

    out = []
    for unit, items in units.items():
        ext = author(items)
        if ext is None:
            continue
        out.append({"unit": unit, "author": part(ext, "author") or {}, "organisation": part(ext, "organisation"),
                    "profession": part(ext, "profession"), "source": part(ext, "source") or "entered",
                    "revision": part(ext, "revision")})
    return out
