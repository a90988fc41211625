"""Check a QuestionnaireResponse (a dict) against its Questionnaire (a dict).

Pure functions over plain JSON dicts, standard library only: no I/O, no web framework, no models.

    validate_response(questionnaire, response, *, completing: bool) -> list[Issue]

looks at:
- structure: every linkId exists in the Questionnaire and sits under its parent; group and display
  items carry no answers; question children sit under `answer.item`; only groups with
  `repeats` appear more than once; each answer has exactly one value[x];
- values: the value[x] matches the item type (valueString for string/text, valueCoding for choice,
  ...); choice codes come from answerOption (open-choice also takes other Codings or a valueString);
  `repeats` for several answers; maxLength; the minValue/maxValue extensions;
- enableWhen: answers to an item that is not enabled are errors (business-rule); operators exists,
  =, !=, >, <, >=, <= and enableBehavior all/any, following the R4 definitions
  (http://hl7.org/fhir/R4/valueset-questionnaire-enable-operator.html): '=' and the comparisons are
  true when at least one answer matches, '!=' is true when no answer equals the value (so also when
  the question has no answer), and a question that is itself disabled counts as unanswered;
- completing=True: every enabled required item is answered. An absent optional group does not make
  its required children missing; an absent required group reports its required descendants.

answerValueSet is not expanded (no terminology access here): a Coding for such an item needs a code.

Issue severities and codes come from OperationOutcome (http://hl7.org/fhir/issue-type): "structure",
"value", "code-invalid", "required", "business-rule". `Issue.to_json()` gives the
OperationOutcome.issue shape; `expression` is a path such as
"QuestionnaireResponse.item[2].item[0].answer[0]".

Two extensions of this service on Questionnaire items (documented here, used by the joint assessment):
- SECTION_PROFESSION_URL on each top-level group: valueCode "health" | "social-care" | "any", the
  profession that normally completes the section (see `section_profession`);
- PREFILL_SOURCE_URL on items the service can pre-fill: valueString naming the source, one of
  PREFILL_SOURCES (see `prefill_sources`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

SECTION_PROFESSION_URL = "https://sharedcare.example.org/fhir/StructureDefinition/section-profession"
PREFILL_SOURCE_URL = "https://sharedcare.example.org/fhir/StructureDefinition/prefill-source"
MIN_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/maxValue"

PROFESSIONS = ("health", "social-care", "any")

# The pre-fill source keys (valueString of PREFILL_SOURCE_URL). "[x]" picks one kind of repeating
# element: the NHS-number identifier (https://fhir.nhs.uk/Id/nhs-number) or the phone telecom.
# "RelatedPerson" on a repeating group means one group instance per RelatedPerson of the patient;
# "RelatedPerson.<element>" on its children are read from that RelatedPerson.
PREFILL_SOURCES = {
    "Patient.name": "the patient's official (else first) name, as text",
    "Patient.birthDate": "date of birth",
    "Patient.gender": "administrative gender (code in http://hl7.org/fhir/administrative-gender)",
    "Patient.identifier[nhs-number]": "the NHS number",
    "Patient.address": "home address, as text",
    "Patient.telecom[phone]": "phone number",
    "Patient.generalPractitioner": "reference to the registered GP practice (Organization)",
    "Patient.communication.language": "preferred language, as text",
    "RelatedPerson": "one group instance per RelatedPerson of the patient",
    "RelatedPerson.name": "the related person's name, as text",
    "RelatedPerson.relationship": "the related person's relationship Coding(s)",
    "RelatedPerson.telecom[phone]": "the related person's phone number",
}

QUESTION_TYPES = {
    "boolean", "decimal", "integer", "date", "dateTime", "time", "string", "text", "url",
    "choice", "open-choice", "attachment", "reference", "quantity",
}
NON_QUESTION_TYPES = {"group", "display"}

# item.type -> the answer value[x] keys it accepts (choice/open-choice are worked out from the options)
_VALUE_KEYS = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
_ALL_VALUE_KEYS = {
    "valueBoolean", "valueDecimal", "valueInteger", "valueDate", "valueDateTime", "valueTime",
    "valueString", "valueUri", "valueAttachment", "valueCoding", "valueQuantity", "valueReference",
}

_DATE_RE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")
_DATETIME_RE = re.compile(
    r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$"
)
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?$")
_ZONE_RE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
_RESPONSE_STATUSES = {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
_OPERATORS = {"exists", "=", "!=", ">", "<", ">=", "<="}


@dataclass(frozen=True)
class Issue:
    severity: str  # error | warning
    code: str  # structure | value | code-invalid | required | business-rule
    link_id: str | None
    message: str
    expression: str

    def to_json(self) -> dict[str, Any]:
        """The OperationOutcome.issue shape."""
        return {"severity": self.severity, "code": self.code, "diagnostics": self.message,
                "expression": [self.expression]}


def has_errors(issues: Iterable[Issue]) -> bool:
    return any(i.severity in ("error", "fatal") for i in issues)


# ---------------------------------------------------------------------------- questionnaire helpers

def _walk(items: Iterable[dict[str, Any]], parent: str | None = None
          ) -> Iterator[tuple[dict[str, Any], str | None]]:
    for it in items or ():
        if not isinstance(it, dict):
            continue
        yield it, parent
        yield from _walk(it.get("item") or (), it.get("linkId"))


def questionnaire_index(questionnaire: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every item of the Questionnaire, at any depth, by linkId (in questionnaire order)."""
    return {it["linkId"]: it for it, _ in _walk(questionnaire.get("item") or ()) if "linkId" in it}


def _parents(questionnaire: dict[str, Any]) -> dict[str, str | None]:
    return {it["linkId"]: parent for it, parent in _walk(questionnaire.get("item") or ()) if "linkId" in it}


def section_of(link_id: str, questionnaire: dict[str, Any] | None = None) -> str:
    """The linkId of the top-level section holding `link_id`.

    With the questionnaire, this follows the item tree (KeyError for an unknown linkId); without it,
    it relies on the linkId scheme of our forms, "<section>.<...>" (the joint assessment keeps to it).
    """
    if questionnaire is None:
        return link_id.split(".", 1)[0]
    parents = _parents(questionnaire)
    if link_id not in parents:
        raise KeyError(f"linkId '{link_id}' is not in Questionnaire '{questionnaire.get('url')}'")
    while parents[link_id] is not None:
        link_id = parents[link_id]  # type: ignore[assignment]
    return link_id


def section_profession(questionnaire: dict[str, Any], section_link_id: str) -> str:
    """"health" | "social-care" | "any": who normally completes the section holding `section_link_id`.

    Any linkId inside the section is accepted too. A section without the extension is "any";
    KeyError for an unknown linkId, ValueError for a value outside PROFESSIONS.
    """
    top = section_of(section_link_id, questionnaire)
    section = next(it for it in questionnaire.get("item") or () if it.get("linkId") == top)
    for ext in section.get("extension") or ():
        if ext.get("url") == SECTION_PROFESSION_URL:
            value = ext.get("valueCode")
            if value not in PROFESSIONS:
                raise ValueError(f"section '{top}' has profession {value!r}, not one of {PROFESSIONS}")
            return value
    return "any"


def prefill_sources(questionnaire: dict[str, Any]) -> dict[str, str]:
    """linkId -> pre-fill source key (PREFILL_SOURCE_URL valueString), in questionnaire order."""
    out: dict[str, str] = {}
    for link_id, it in questionnaire_index(questionnaire).items():
        for ext in it.get("extension") or ():
            if ext.get("url") == PREFILL_SOURCE_URL and isinstance(ext.get("valueString"), str):
                out[link_id] = ext["valueString"]
    return out


def check_questionnaire(questionnaire: dict[str, Any]) -> list[str]:
    """Problems with a Questionnaire's own design that the validator relies on (empty when sound)."""
    problems: list[str] = []
    seen: set[str] = set()
    index = questionnaire_index(questionnaire)
    for it, _parent in _walk(questionnaire.get("item") or ()):
        lid = it.get("linkId")
        if not isinstance(lid, str) or not lid:
            problems.append(f"an item has no linkId: {it.get('text')!r}")
            continue
        if lid in seen:
            problems.append(f"linkId '{lid}' is used more than once")
        seen.add(lid)
        type_ = it.get("type")
        if type_ not in QUESTION_TYPES | NON_QUESTION_TYPES:
            problems.append(f"item '{lid}' has unknown type {type_!r}")
        if type_ == "group" and not it.get("item"):
            problems.append(f"group '{lid}' has no items")
        if type_ == "display" and (it.get("required") or it.get("repeats") or it.get("item")):
            problems.append(f"display item '{lid}' cannot be required, repeat or have items")
        if it.get("answerOption") and type_ not in ("choice", "open-choice"):
            problems.append(f"item '{lid}' has answerOption but is of type {type_}")
        conds = it.get("enableWhen") or []
        if len(conds) > 1 and it.get("enableBehavior") not in ("all", "any"):
            problems.append(f"item '{lid}' has several enableWhen but no enableBehavior (all | any)")
        for cond in conds:
            q = cond.get("question")
            if q not in index:
                problems.append(f"item '{lid}' enableWhen refers to unknown question '{q}'")
            elif index[q].get("type") in NON_QUESTION_TYPES:
                problems.append(f"item '{lid}' enableWhen refers to '{q}', which is not a question")
            if cond.get("operator") not in _OPERATORS:
                problems.append(f"item '{lid}' enableWhen has unknown operator {cond.get('operator')!r}")
            if cond.get("operator") == "exists" and "answerBoolean" not in cond:
                problems.append(f"item '{lid}' enableWhen 'exists' needs answerBoolean")
            if q == lid:
                problems.append(f"item '{lid}' enableWhen refers to itself")
    return problems


# ---------------------------------------------------------------------------- values

def _value_of(answer: dict[str, Any]) -> tuple[str, Any] | None:
    keys = [k for k in answer if k.startswith("value")]
    if len(keys) != 1:
        return None
    return keys[0], answer[keys[0]]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _codings_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if a.get("code") != b.get("code") or a.get("code") is None:
        return False
    if a.get("system") and b.get("system"):
        return a["system"] == b["system"]
    return True


def _values_equal(kind: str, a: Any, b: Any) -> bool:
    """Equality of two value[x]/answer[x] payloads of the same kind ("Coding", "Integer", ...)."""
    if kind == "Coding":
        return _codings_equal(a, b)
    if kind in ("Integer", "Decimal"):
        return _is_number(a) and _is_number(b) and a == b
    if kind == "Quantity":
        return (isinstance(a, dict) and isinstance(b, dict) and _quantity_cmp(a, b) == 0)
    if kind == "Reference":
        return isinstance(a, dict) and isinstance(b, dict) and bool(a.get("reference")) \
            and a.get("reference") == b.get("reference")
    if kind == "Boolean":
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


def _date_key(s: Any) -> tuple[int, ...] | None:
    if not isinstance(s, str):
        return None
    m = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", s)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def _quantity_cmp(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    unit_a = (a.get("system"), a.get("code")) if a.get("code") else (None, a.get("unit"))
    unit_b = (b.get("system"), b.get("code")) if b.get("code") else (None, b.get("unit"))
    if unit_a != unit_b or not _is_number(a.get("value")) or not _is_number(b.get("value")):
        return None
    return (a["value"] > b["value"]) - (a["value"] < b["value"])


def _compare(kind: str, a: Any, b: Any) -> int | None:
    """-1/0/1 ordering of two values of one kind, or None when they cannot be ordered."""
    if kind in ("Integer", "Decimal"):
        if _is_number(a) and _is_number(b):
            return (a > b) - (a < b)
        return None
    if kind in ("Date", "DateTime"):
        ka, kb = _date_key(a), _date_key(b)
        if kind == "DateTime" and isinstance(a, str) and isinstance(b, str) and "T" in a and "T" in b:
            za, zb = _ZONE_RE.search(a), _ZONE_RE.search(b)
            if za and zb and za.group() == zb.group() and len(a) == len(b):
                return (a > b) - (a < b)  # same zone and precision: ISO strings order correctly
            return None
        if ka is None or kb is None or len(ka) != len(kb):
            return None  # different precisions are not comparable
        return (ka > kb) - (ka < kb)
    if kind in ("Time", "String"):
        if isinstance(a, str) and isinstance(b, str):
            return (a > b) - (a < b)
        return None
    if kind == "Quantity" and isinstance(a, dict) and isinstance(b, dict):
        return _quantity_cmp(a, b)
    return None


@dataclass(frozen=True)
class _Answers:
    """The valid answers of a question, and whether it also has invalid ones."""

    valid: list[dict[str, Any]]
    invalid: bool = False


def _condition_holds(cond: dict[str, Any], answers: _Answers | None) -> bool | None:
    """Whether one enableWhen condition holds: True, False, or None when it cannot be told because
    the question has invalid answers (wrong type, malformed, not an option) that might have decided
    it, or its own enablement is unknown. An item whose enablement is unknown is neither required
    nor reported as answered-while-disabled, so one bad answer is reported once, not again through
    every question depending on it."""
    if answers is None:
        return None
    op = cond.get("operator")
    answer_keys = [k for k in cond if k.startswith("answer")]
    if op == "exists":
        return bool(answers.valid or answers.invalid) == bool(cond.get("answerBoolean"))
    if len(answer_keys) != 1 or op not in _OPERATORS:
        return False
    kind = answer_keys[0][len("answer"):]
    expected = cond[answer_keys[0]]
    # answers whose value[x] is of the same kind (integer and decimal compare with each other)
    kinds = {"Integer", "Decimal"} if kind in ("Integer", "Decimal") else {kind}
    values = [v[1] for v in (_value_of(a) for a in answers.valid)
              if v is not None and v[0][len("value"):] in kinds]
    if op == "!=":
        if any(_values_equal(kind, v, expected) for v in values):
            return False
        return None if answers.invalid else True
    if op == "=":
        found = any(_values_equal(kind, v, expected) for v in values)
    else:
        wanted = {">": (1,), "<": (-1,), ">=": (1, 0), "<=": (-1, 0)}[op]
        found = any(_compare(kind, v, expected) in wanted for v in values)
    return True if found else (None if answers.invalid else False)


def _all(results: Iterable[bool | None]) -> bool | None:
    values = list(results)
    return False if False in values else (None if None in values else True)


def _any(results: Iterable[bool | None]) -> bool | None:
    values = list(results)
    return True if True in values else (None if None in values else False)


# ---------------------------------------------------------------------------- enablement

class _Context:
    """One enclosing level of the response (root, a group instance, or a question's answer)."""

    __slots__ = ("items", "parent")

    def __init__(self, items: list[Any], parent: _Context | None) -> None:
        self.items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        self.parent = parent


def _find(items: list[dict[str, Any]], link_id: str) -> list[dict[str, Any]]:
    found = []
    for it in items:
        if it.get("linkId") == link_id:
            found.append(it)
        for child in _children_of(it):
            found.extend(_find([child], link_id))
    return found


def _children_of(resp_item: dict[str, Any]) -> list[dict[str, Any]]:
    kids = [c for c in resp_item.get("item") or [] if isinstance(c, dict)] \
        if isinstance(resp_item.get("item"), list) else []
    answers = resp_item.get("answer")
    if isinstance(answers, list):
        for ans in answers:
            if isinstance(ans, dict) and isinstance(ans.get("item"), list):
                kids.extend(c for c in ans["item"] if isinstance(c, dict))
    return kids


class _Enablement:
    """Works out whether items are enabled, reading answers from the nearest enclosing level first
    (so a condition inside a repeating group reads the same group instance), then further out."""

    def __init__(self, questionnaire: dict[str, Any], root: _Context) -> None:
        self.index = questionnaire_index(questionnaire)
        self.parents = _parents(questionnaire)
        self.root = root
        # keyed by the context object itself (not its id): the memo keeps contexts alive
        self._memo: dict[tuple[str, _Context], bool | None] = {}
        self._visiting: set[tuple[str, _Context]] = set()

    def answers(self, link_id: str, ctx: _Context) -> _Answers | None:
        """The answers of `link_id` seen from `ctx` ([] when disabled, None when that is unknown)."""
        level: _Context | None = ctx
        while level is not None:
            found = _find(level.items, link_id)
            if found:
                enabled = self.enabled(link_id, level)
                if enabled is not True:
                    return None if enabled is None else _Answers([])  # disabled counts as unanswered
                answers = [a for it in found for a in (it.get("answer") or []) if isinstance(a, dict)]
                q_item = self.index.get(link_id)
                valid = [a for a in answers if q_item is None or not _answer_problems(q_item, a)]
                return _Answers(valid, invalid=len(valid) < len(answers))
            level = level.parent
        return _Answers([])

    def own_condition(self, link_id: str, ctx: _Context) -> bool | None:
        item = self.index[link_id]
        conds = item.get("enableWhen") or []
        if not conds:
            return True
        results = (_condition_holds(c, self.answers(c.get("question", ""), ctx)) for c in conds)
        return _any(results) if item.get("enableBehavior") == "any" else _all(results)

    def enabled(self, link_id: str, ctx: _Context) -> bool | None:
        """Whether the item and all its ancestors are enabled in this context: True, False, or None
        when it depends on invalid answers."""
        key = (link_id, ctx)
        if key in self._memo:
            return self._memo[key]
        if key in self._visiting:
            return False  # a cycle of conditions enables nothing
        self._visiting.add(key)
        try:
            chain = []
            lid: str | None = link_id
            while lid is not None:
                chain.append(lid)
                lid = self.parents.get(lid)
            result = _all(self.own_condition(x, ctx) for x in reversed(chain))
        finally:
            self._visiting.discard(key)
        self._memo[key] = result
        return result


def enabled_items(questionnaire: dict[str, Any], response: dict[str, Any] | None = None) -> list[str]:
    """linkIds (questionnaire order) of the items enabled by the response's current answers.

    Conditions are read against the whole response. Inside repeating groups, where enablement can
    differ between instances, the answers of all instances are read together (validate_response
    checks each instance on its own).
    """
    root = _Context((response or {}).get("item") or [], None)
    en = _Enablement(questionnaire, root)
    return [lid for lid in en.index if en.enabled(lid, root) is True]


# ---------------------------------------------------------------------------- validation

class _Validator:
    def __init__(self, questionnaire: dict[str, Any], response: dict[str, Any]) -> None:
        self.q = questionnaire
        self.index = questionnaire_index(questionnaire)
        self.parents = _parents(questionnaire)
        self.root = _Context(response.get("item") or [], None)
        self.enable = _Enablement(questionnaire, self.root)
        self.issues: list[Issue] = []

    def add(self, severity: str, code: str, link_id: str | None, message: str, expression: str) -> None:
        self.issues.append(Issue(severity, code, link_id, message, expression))

    # -- the response as given: structure, values, enablement
    def items(self, resp_items: Any, allowed: list[dict[str, Any]], parent_id: str | None, ctx: _Context,
              path: str, parent_disabled: bool) -> None:
        if resp_items is None:
            return
        if not isinstance(resp_items, list):
            self.add("error", "structure", parent_id,
                     f"'item' under {parent_id or 'the response'} must be a list", path + ".item")
            return
        allowed_ids = [a["linkId"] for a in allowed]
        seen_counts: dict[str, int] = {}
        last_pos = -1
        for n, r in enumerate(resp_items):
            p = f"{path}.item[{n}]"
            if not isinstance(r, dict) or not isinstance(r.get("linkId"), str):
                self.add("error", "structure", None, "an item without a linkId", p)
                continue
            lid = r["linkId"]
            if lid not in self.index:
                self.add("error", "structure", lid,
                         f"linkId '{lid}' is not in Questionnaire '{self.q.get('url')}'", p)
                continue
            if lid not in allowed_ids:
                where = repr(self.parents[lid]) if self.parents.get(lid) else "the top level"
                here = repr(parent_id) if parent_id else "the top level"
                self.add("error", "structure", lid,
                         f"item '{lid}' is misplaced: it belongs under {where}, not under {here}", p)
                continue
            pos = allowed_ids.index(lid)
            if pos < last_pos:
                self.add("warning", "structure", lid,
                         f"item '{lid}' is out of order (items follow the Questionnaire's order)", p)
            last_pos = max(last_pos, pos)
            q_item = self.index[lid]
            seen_counts[lid] = seen_counts.get(lid, 0) + 1
            if seen_counts[lid] == 2:
                if q_item.get("type") == "group" and not q_item.get("repeats"):
                    self.add("error", "structure", lid,
                             f"group '{lid}' does not repeat but appears more than once", p)
                elif q_item.get("type") != "group":
                    self.add("error", "structure", lid, f"item '{lid}' appears more than once: "
                             "give several answers to one item instead", p)
            self.item(r, q_item, ctx, p, parent_disabled)

    def item(self, r: dict[str, Any], q_item: dict[str, Any], ctx: _Context, path: str,
             parent_disabled: bool) -> None:
        lid = q_item["linkId"]
        type_ = q_item.get("type")
        disabled_here = not parent_disabled and self.enable.enabled(lid, ctx) is False
        if disabled_here and _has_content(r):
            self.add("error", "business-rule", lid,
                     f"item '{lid}' is answered but not enabled: its enableWhen conditions are not met", path)
        suppress = parent_disabled or disabled_here
        children = [c for c in q_item.get("item") or [] if isinstance(c, dict) and "linkId" in c]
        if type_ in NON_QUESTION_TYPES:
            if "answer" in r:
                self.add("error", "structure", lid, f"{type_} item '{lid}' cannot have answers",
                         path + ".answer")
            if type_ == "group":
                self.items(r.get("item"), children, lid, _Context(r.get("item") or [], ctx), path, suppress)
            elif r.get("item"):
                self.add("error", "structure", lid, f"display item '{lid}' cannot have items", path + ".item")
            return
        if r.get("item"):
            self.add("error", "structure", lid,
                     f"question '{lid}' holds its nested items under answer.item, not item", path + ".item")
        answers = r.get("answer")
        if answers is None:
            return
        if not isinstance(answers, list) or not answers:
            self.add("error", "structure", lid, f"'answer' of '{lid}' must be a non-empty list",
                     path + ".answer")
            return
        if len(answers) > 1 and not q_item.get("repeats"):
            self.add("error", "structure", lid,
                     f"item '{lid}' does not repeat but has {len(answers)} answers", path + ".answer")
        seen: list[tuple[str, Any]] = []
        for n, ans in enumerate(answers):
            p = f"{path}.answer[{n}]"
            if not isinstance(ans, dict):
                self.add("error", "structure", lid, f"an answer of '{lid}' is not an object", p)
                continue
            value = self.answer_value(q_item, ans, p)
            if value is not None:
                if value in seen:
                    self.add("warning", "value", lid, f"item '{lid}' has the same answer twice", p)
                else:
                    seen.append(value)
            if "item" in ans:
                if not children:
                    self.add("error", "structure", lid,
                             f"question '{lid}' has no nested items in the Questionnaire", p + ".item")
                else:
                    self.items(ans["item"], children, lid, _Context(ans["item"] or [], ctx), p, suppress)

    def answer_value(self, q_item: dict[str, Any], ans: dict[str, Any], path: str) -> tuple[str, Any] | None:
        problems = _answer_problems(q_item, ans)
        for code, message, suffix in problems:
            self.add("error", code, q_item["linkId"], message, path + suffix)
        value = _value_of(ans)
        return None if problems or value is None else (value[0], _hashable(value[1]))

    # -- completeness (completing=True): every enabled required item is answered
    def required(self, q_items: list[dict[str, Any]], resp_items: list[dict[str, Any]], ctx: _Context,
                 path: str) -> int:
        """Reports missing required items under one level; returns how many it reported."""
        reported = 0
        for q_item in q_items:
            if not isinstance(q_item, dict) or "linkId" not in q_item:
                continue
            lid = q_item["linkId"]
            type_ = q_item.get("type")
            if type_ == "display" or self.enable.enabled(lid, ctx) is not True:
                continue  # disabled, or enablement hangs on an invalid answer reported already
            instances = [r for r in resp_items if r.get("linkId") == lid]
            children = q_item.get("item") or []
            if type_ == "group":
                if instances:
                    for r in instances:
                        kids = [c for c in r.get("item") or [] if isinstance(c, dict)]
                        reported += self.required(children, kids, _Context(kids, ctx), path)
                elif q_item.get("required"):
                    inner = self.required(children, [], _Context([], ctx), path)
                    if not inner:
                        self.add("error", "required", lid, f"required group '{lid}' ({q_item.get('text')}) "
                                 "has no answers", path)
                        inner = 1
                    reported += inner
                continue
            answers = [a for r in instances for a in (r.get("answer") or []) if isinstance(a, dict)
                       and _value_of(a) is not None]
            if not answers:
                if q_item.get("required"):
                    self.add("error", "required", lid,
                             f"required item '{lid}' ({q_item.get('text')}) is not answered", path)
                    reported += 1
                continue
            if children:
                for r in instances:
                    for a in r.get("answer") or []:
                        if isinstance(a, dict):
                            kids = [c for c in a.get("item") or [] if isinstance(c, dict)]
                            reported += self.required(children, kids, _Context(kids, ctx), path)
        return reported


def _answer_problems(q_item: dict[str, Any], ans: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What is wrong with one answer to `q_item`: (issue code, message, expression suffix) each."""
    lid = q_item["linkId"]
    type_ = q_item.get("type")
    keys = [k for k in ans if k.startswith("value")]
    if not keys:
        return [] if "item" in ans else [("structure", f"an answer of '{lid}' has no value", "")]
    if len(keys) > 1:
        return [("structure", f"an answer of '{lid}' has several values: {', '.join(keys)}", "")]
    key, value = keys[0], ans[keys[0]]
    if key not in _ALL_VALUE_KEYS:
        return [("structure", f"an answer of '{lid}' has unknown value type '{key}'", "")]
    at = "." + key
    options = [o for o in q_item.get("answerOption") or [] if isinstance(o, dict)]
    if type_ in ("choice", "open-choice"):
        option_keys = {k for o in options for k in o if k.startswith("value")} or {"valueCoding"}
        accepted = option_keys | ({"valueString"} if type_ == "open-choice" else set())
    else:
        accepted = set(_VALUE_KEYS.get(type_ or "", ()))
    if key not in accepted:
        return [("value", (f"item '{lid}' is of type {type_} and takes {' or '.join(sorted(accepted))}, "
                           f"not {key}"), at)]
    problem = _shape_problem(key, value)
    if problem:
        return [("value", f"item '{lid}': {problem}", at)]
    out = [("value", message, at) for message in _constraint_problems(q_item, key, value)]
    if type_ == "choice" and options and not any(_option_matches(o, key, value) for o in options):
        out.append(("code-invalid", f"item '{lid}': {_describe(key, value)} is not one of its answer options",
                    at))
    return out


def _constraint_problems(q_item: dict[str, Any], key: str, value: Any) -> list[str]:
    """maxLength and the minValue / maxValue extensions."""
    lid = q_item["linkId"]
    out = []
    max_length = q_item.get("maxLength")
    if key == "valueString" and isinstance(max_length, int) and len(value) > max_length:
        out.append(f"item '{lid}' is longer than its maxLength {max_length}")
    kind = key[len("value"):]
    for ext in q_item.get("extension") or ():
        url = ext.get("url") if isinstance(ext, dict) else None
        if url not in (MIN_VALUE_URL, MAX_VALUE_URL):
            continue
        limit = next((v for k, v in ext.items() if k.startswith("value")), None)
        if kind in ("Decimal", "Integer"):
            order = _compare("Decimal", value, limit)
        elif kind in ("Date", "DateTime", "Time"):
            order = _compare(kind, value, limit)
        else:
            continue
        if url == MIN_VALUE_URL and order == -1:
            out.append(f"item '{lid}' is below its minimum {limit}")
        if url == MAX_VALUE_URL and order == 1:
            out.append(f"item '{lid}' is above its maximum {limit}")
    return out


def _has_content(resp_item: dict[str, Any]) -> bool:
    """Whether an item (or anything under it) carries an answer value."""
    for ans in resp_item.get("answer") or []:
        if not isinstance(ans, dict):
            continue
        if _value_of(ans) is not None:
            return True
        if any(_has_content(c) for c in ans.get("item") or [] if isinstance(c, dict)):
            return True
    return any(_has_content(c) for c in resp_item.get("item") or [] if isinstance(c, dict))


def _shape_problem(key: str, value: Any) -> str | None:
    if key == "valueBoolean" and not isinstance(value, bool):
        return f"valueBoolean must be true or false, not {value!r}"
    if key == "valueInteger" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"valueInteger must be a whole number, not {value!r}"
    if key == "valueDecimal" and not _is_number(value):
        return f"valueDecimal must be a number, not {value!r}"
    if key in ("valueString", "valueUri") and (not isinstance(value, str) or not value.strip()):
        return f"{key} must be a non-blank string"
    if key == "valueDate" and (not isinstance(value, str) or not _DATE_RE.match(value)):
        return f"valueDate {value!r} is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)"
    if key == "valueDateTime" and (not isinstance(value, str) or not _DATETIME_RE.match(value)):
        return f"valueDateTime {value!r} is not a FHIR dateTime"
    if key == "valueTime" and (not isinstance(value, str) or not _TIME_RE.match(value)):
        return f"valueTime {value!r} is not a FHIR time (hh:mm:ss)"
    if key == "valueCoding" and (not isinstance(value, dict) or not isinstance(value.get("code"), str)):
        return "valueCoding must be a Coding with a code"
    if key == "valueReference" and (not isinstance(value, dict) or not any(
            value.get(k) for k in ("reference", "identifier", "display"))):
        return "valueReference must be a Reference with a reference, identifier or display"
    if key == "valueQuantity" and (not isinstance(value, dict) or not _is_number(value.get("value"))):
        return "valueQuantity must be a Quantity with a numeric value"
    if key == "valueAttachment" and not isinstance(value, dict):
        return "valueAttachment must be an Attachment"
    return None


def _option_matches(option: dict[str, Any], key: str, value: Any) -> bool:
    if key not in option:
        return False
    kind = key[len("value"):]
    return _values_equal(kind, value, option[key])


def _describe(key: str, value: Any) -> str:
    if key == "valueCoding" and isinstance(value, dict):
        return f"code '{value.get('code')}'" + (f" from {value['system']}" if value.get("system") else "")
    return f"{key} {value!r}"


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        if "code" in value:
            return ("coding", value.get("system"), value.get("code"))
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def validate_response(questionnaire: dict[str, Any], response: dict[str, Any], *,
                      completing: bool) -> list[Issue]:
    """Every problem with `response` as an answer set to `questionnaire` (empty list when none).

    completing=False checks what is there (an in-progress, partial response is fine);
    completing=True also requires every enabled required item to be answered.
    """
    if not isinstance(response, dict) or response.get("resourceType") != "QuestionnaireResponse":
        return [Issue("error", "structure", None, "not a QuestionnaireResponse", "QuestionnaireResponse")]
    v = _Validator(questionnaire, response)
    status = response.get("status")
    if status not in _RESPONSE_STATUSES:
        v.add("error", "value", None, f"status {status!r} is not one of {sorted(_RESPONSE_STATUSES)}",
              "QuestionnaireResponse.status")
    canonical = response.get("questionnaire")
    url, version = questionnaire.get("url"), questionnaire.get("version")
    if canonical is not None and canonical not in (url, f"{url}|{version}"):
        v.add("error", "business-rule", None,
              f"the response is to Questionnaire {canonical!r}, not {url}|{version}",
              "QuestionnaireResponse.questionnaire")
    top = [i for i in questionnaire.get("item") or [] if isinstance(i, dict) and "linkId" in i]
    v.items(response.get("item"), top, None, v.root, "QuestionnaireResponse", False)
    if completing:
        v.required(top, v.root.items, v.root, "QuestionnaireResponse")
    return v.issues
