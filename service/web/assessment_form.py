"""The joint assessment as an HTML form, one section at a time (pure functions over the Questionnaire and the
QuestionnaireResponse JSON): which input each answer type gets, enableWhen, required items, pre-filled answers,
and the section's answers read back from a posted form.

Field names: a question's linkId; inside instance n of a repeating group, `<linkId>~<n>`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

ANSWER_AUTHOR = "https://sharedcare.example.org/fhir/StructureDefinition/answer-author"
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RADIO_MAX = 6  # more options than this: a select list


def author_of(item: dict[str, Any]) -> dict[str, Any]:
    for e in item.get("extension") or []:
        if e.get("url") == ANSWER_AUTHOR:
            return {p.get("url"): next((v for k, v in p.items() if k.startswith("value")), None)
                    for p in e.get("extension") or []}
    return {}


def option_key(v: dict[str, Any]) -> str:
    if "valueCoding" in v:
        c = v["valueCoding"]
        return f"{c.get('system', '')}|{c.get('code', '')}"
    for k in ("valueString", "valueInteger", "valueDate"):
        if k in v:
            return str(v[k])
    return ""


def answer_text(ans: dict[str, Any]) -> str:
    """An answer as a person reads it."""
    if "valueCoding" in ans:
        return str(ans["valueCoding"].get("display") or ans["valueCoding"].get("code"))
    if "valueBoolean" in ans:
        return "Yes" if ans["valueBoolean"] else "No"
    if "valueReference" in ans:
        return str(ans["valueReference"].get("display") or ans["valueReference"].get("reference"))
    for k, v in ans.items():
        if k.startswith("value"):
            return str(v)
    return ""


def _raw(ans: dict[str, Any]) -> str:
    if "valueCoding" in ans:
        return option_key(ans)
    if "valueBoolean" in ans:
        return "true" if ans["valueBoolean"] else "false"
    if "valueReference" in ans:
        return str(ans["valueReference"].get("reference", ""))
    for k, v in ans.items():
        if k.startswith("value"):
            return str(v)
    return ""


def sections(q: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in q.get("item") or [] if i.get("type") == "group"]


# -- enableWhen --------------------------------------------------------------------------------------------------
def _matches(cond: dict[str, Any], answers: list[dict[str, Any]]) -> bool:
    op = cond.get("operator")
    want_key = next((k for k in cond if k.startswith("answer")), None)
    want = cond.get(want_key) if want_key else None
    if op == "exists":
        return bool(answers) == bool(want)
    values = []
    for a in answers:
        v = next((x for k, x in a.items() if k.startswith("value")), None)
        values.append(v)
    if want_key == "answerCoding":
        codes = [(v.get("system"), v.get("code")) for v in values if isinstance(v, dict)]
        hit = (want.get("system"), want.get("code")) in codes
        return hit if op == "=" else (not hit and bool(codes)) if op == "!=" else False
    if op == "=":
        return any(v == want for v in values)
    if op == "!=":
        return bool(values) and all(v != want for v in values)
    try:
        nums = [float(v) for v in values if v is not None and not isinstance(v, bool)]
        w = float(want)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return any({">": n > w, ">=": n >= w, "<": n < w, "<=": n <= w}.get(op or "", False) for n in nums)


def enabled(item: dict[str, Any], lookup: Any) -> bool:
    conds = item.get("enableWhen") or []
    if not conds:
        return True
    results = [_matches(c, lookup(c.get("question"))) for c in conds]
    return any(results) if item.get("enableBehavior") == "any" else all(results)


# -- rendering ---------------------------------------------------------------------------------------------------
def _answers_by_link(items: list[dict[str, Any]], out: dict[str, list[dict[str, Any]]]) -> None:
    for it in items or []:
        if it.get("answer") and it.get("linkId") not in out:
            out[it["linkId"]] = it["answer"]
        _answers_by_link(it.get("item") or [], out)
        for a in it.get("answer") or []:
            _answers_by_link(a.get("item") or [], out)


def current_answers(response: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    _answers_by_link(response.get("item") or [], out)
    return out


def render(q_items: list[dict[str, Any]], r_items: list[dict[str, Any]], glob: dict[str, list[dict[str, Any]]],
           posted: dict[str, list[str]] | None = None, suffix: str = "") -> list[dict[str, Any]]:
    """Nodes for the template: each question with its input kind, options, current (or posted) values, whether it
    is enabled, required, pre-filled; groups and repeating groups with their children."""
    local: dict[str, list[dict[str, Any]]] = {}
    _answers_by_link(r_items, local)

    def lookup(link: str) -> list[dict[str, Any]]:
        return local.get(link) if link in local else glob.get(link, [])

    nodes: list[dict[str, Any]] = []
    for it in q_items:
        lid, kind = it.get("linkId"), it.get("type")
        matching = [r for r in r_items if r.get("linkId") == lid]
        node: dict[str, Any] = {"item": it, "type": kind, "id": f"{lid}{suffix}".replace(".", "-").replace("~", "-"),
                                "name": f"{lid}{suffix}", "required": bool(it.get("required")),
                                "enabled": enabled(it, lookup), "conditions": _conditions(it, suffix)}
        if kind == "display":
            nodes.append(node)
            continue
        if kind == "group" and it.get("repeats"):
            instances = [m.get("item") or [] for m in matching] + [[]]
            node["instances"] = [render(it.get("item") or [], inst, glob, posted, f"~{n}")
                                 for n, inst in enumerate(instances)]
        elif kind == "group":
            node["children"] = render(it.get("item") or [], matching[0].get("item") or [] if matching else [], glob,
                                      posted, suffix)
        else:
            answers = matching[0].get("answer") or [] if matching else []
            author = author_of(matching[0]) if matching else {}
            node["values"] = posted.get(node["name"], []) if posted is not None else [_raw(a) for a in answers]
            node["prefilled"] = author.get("source") == "prefilled"
            node["author"] = author
            node["options"] = [(option_key(o), answer_text(o)) for o in it.get("answerOption") or []]
            node["control"] = _control(it, len(node["options"]))
        nodes.append(node)
    return nodes


def _control(it: dict[str, Any], n_options: int) -> str:
    t = it.get("type")
    if t == "boolean":
        return "yesno"
    if t in ("choice", "open-choice"):
        if it.get("repeats"):
            return "checkboxes"
        return "radios" if n_options <= RADIO_MAX else "select"
    return {"text": "textarea", "integer": "integer", "decimal": "decimal", "date": "date"}.get(t or "", "text")


def _conditions(it: dict[str, Any], suffix: str) -> str:
    """enableWhen for the page's script: 'behaviour;name op value;...' (values as the inputs carry them)."""
    conds = []
    for c in it.get("enableWhen") or []:
        key = next((k for k in c if k.startswith("answer")), None)
        want = c.get(key) if key else None
        if key == "answerCoding" and isinstance(want, dict):
            value = f"{want.get('system', '')}|{want.get('code', '')}"
        elif isinstance(want, bool):
            value = "true" if want else "false"
        else:
            value = str(want)
        conds.append(f"{c.get('question')}{suffix if suffix else ''}\t{c.get('operator')}\t{value}")
    if not conds:
        return ""
    return (it.get("enableBehavior") or "all") + "\n" + "\n".join(conds)


# -- reading a posted section back -------------------------------------------------------------------------------
def _answer(it: dict[str, Any], raw: str) -> tuple[dict[str, Any] | None, str | None]:
    t = it.get("type")
    raw = raw.strip()
    if raw == "":
        return None, None
    if t == "boolean":
        return ({"valueBoolean": raw == "true"}, None) if raw in ("true", "false") else (None, "Choose yes or no")
    if t in ("choice", "open-choice"):
        for o in it.get("answerOption") or []:
            if option_key(o) == raw:
                return {k: v for k, v in o.items() if k.startswith("value")}, None
        if t == "open-choice":
            return {"valueString": raw[:1000]}, None
        return None, "Choose one of the options"
    if t == "integer":
        return ({"valueInteger": int(raw)}, None) if re.fullmatch(r"-?\d{1,9}", raw) else \
            (None, "Enter a whole number, like 12")
    if t == "decimal":
        try:
            return {"valueDecimal": float(raw)}, None
        except ValueError:
            return None, "Enter a number, like 62.5"
    if t == "date":
        try:
            if not DATE.match(raw):
                raise ValueError
            date.fromisoformat(raw)
        except ValueError:
            return None, "Enter a real date, like 2026-12-07"
        return {"valueDate": raw}, None
    if t == "reference":
        return {"valueReference": {"reference": raw[:200]}}, None
    return {"valueString": raw[:5000]}, None


def read_section(section: dict[str, Any], form: dict[str, list[str]], glob: dict[str, list[dict[str, Any]]]
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """The section's QuestionnaireResponse item from the posted form, and errors per field name. Answers to items
    that enableWhen switches off are left out."""
    errors: dict[str, str] = {}
    raw: dict[str, list[dict[str, Any]]] = {}

    def parse(items: list[dict[str, Any]], suffix: str) -> None:
        for it in items:
            if it.get("type") == "display":
                continue
            if it.get("type") == "group" and it.get("repeats"):
                n = 0
                while any(k.endswith(f"~{n}") for k in form):
                    parse(it.get("item") or [], f"~{n}")
                    n += 1
            elif it.get("type") == "group":
                parse(it.get("item") or [], suffix)
            else:
                name = f"{it['linkId']}{suffix}"
                out = []
                for v in form.get(name, []):
                    ans, err = _answer(it, v)
                    if err:
                        errors[name] = err
                    elif ans is not None:
                        out.append(ans)
                if out:
                    raw[name] = out if it.get("repeats") else out[:1]

    parse([section], "")

    def build(items: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
        def lookup(link: str) -> list[dict[str, Any]]:
            if f"{link}{suffix}" in raw or _on_page(section, link):
                return raw.get(f"{link}{suffix}", raw.get(link, []))
            return glob.get(link, [])

        out: list[dict[str, Any]] = []
        for it in items:
            if it.get("type") == "display" or not enabled(it, lookup):
                continue
            lid = it["linkId"]
            if it.get("type") == "group" and it.get("repeats"):
                n = 0
                while any(k.endswith(f"~{n}") for k in form):
                    children = build(it.get("item") or [], f"~{n}")
                    if children:
                        out.append({"linkId": lid, "item": children})
                    n += 1
            elif it.get("type") == "group":
                children = build(it.get("item") or [], suffix)
                if children:
                    out.append({"linkId": lid, "item": children})
            elif f"{lid}{suffix}" in raw:
                out.append({"linkId": lid, "answer": raw[f"{lid}{suffix}"]})
        return out

    items = build([section], "")
    return (items[0] if items else {"linkId": section["linkId"]}), errors


def _on_page(section: dict[str, Any], link: str) -> bool:
    return link.split(".", 1)[0] == section.get("linkId")


def missing_required(q: dict[str, Any], response: dict[str, Any]) -> list[str]:
    """The texts of required questions that are switched on and not answered (what $complete would refuse)."""
    glob = current_answers(response)
    out: list[str] = []

    def walk(items: list[dict[str, Any]], r_items: list[dict[str, Any]]) -> None:
        local: dict[str, list[dict[str, Any]]] = {}
        _answers_by_link(r_items, local)

        def lookup(link: str) -> list[dict[str, Any]]:
            return local.get(link) if link in local else glob.get(link, [])

        for it in items:
            if it.get("type") == "display" or not enabled(it, lookup):
                continue
            matching = [r for r in r_items if r.get("linkId") == it.get("linkId")]
            if it.get("type") == "group":
                if it.get("repeats") and it.get("required") and not matching:
                    out.append(str(it.get("text") or it.get("linkId")))
                if it.get("repeats"):
                    for m in matching:
                        walk(it.get("item") or [], m.get("item") or [])
                else:
                    walk(it.get("item") or [], matching[0].get("item") or [] if matching else [])
            elif it.get("required") and not (matching and matching[0].get("answer")):
                out.append(str(it.get("text") or it.get("linkId")))

    walk(q.get("item") or [], response.get("item") or [])
    return out
