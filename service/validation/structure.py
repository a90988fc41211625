"""One pass over a resource's JSON against the official R4 element definitions (data/elements.json).

Checks what the base specification's element definitions and invariants forbid, each issue naming the element
path (FHIRPath style, `Patient.name[0].family`) and the rule:
- unknown elements; an array where at most one is allowed and a single value where an array is required
  (cardinality); required elements (min 1); two choices of one `[x]` element;
- JSON types of primitives (a boolean is `true`/`false`, not `"yes"`; a decimal is a number, not a string),
  integer ranges, and the formats of code, id, uri, oid, uuid, date, dateTime, instant and time (a real
  calendar date; a time needs a zone);
- ele-1: no null, no empty object, array or string; ext-1 (an extension has a value or extensions, not both);
- per-1 (a Period does not end before it starts, compared at the precision both have);
- base64Binary that decodes; dom-2 (a contained resource contains nothing);
- txt-1 / txt-2 (service.validation.narrative);
- the base specification's required bindings (service.validation.bindings): a `code` must be in its ValueSet,
  a Coding of a required-bound CodeableConcept/Coding from one of the ValueSet's systems must be one of its codes.
Dictionary look-ups only: tens of microseconds for a typical resource.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from service.fhir.outcome import Issue
from service.validation import bindings
from service.validation.narrative import problems as narrative_problems

DATA = Path(__file__).resolve().parent / "data" / "elements.json"

INT_RANGES = {"integer": (-2 ** 31, 2 ** 31 - 1), "unsignedInt": (0, 2 ** 31 - 1), "positiveInt": (1, 2 ** 31 - 1)}
STRINGS = frozenset({"string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary",
                     "date", "dateTime", "instant", "time", "xhtml"})
YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
MONTH_DAY = r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
FORMATS = {
    "code": (re.compile(r"[^\s]+( [^\s]+)*"), "a code (no leading, trailing or double whitespace)"),
    "id": (re.compile(r"[A-Za-z0-9\-.]{1,64}"), "an id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"),
    "uri": (re.compile(r"\S+"), "a uri (no whitespace)"),
    "url": (re.compile(r"\S+"), "a url (no whitespace)"),
    "canonical": (re.compile(r"\S+"), "a canonical URL (no whitespace)"),
    "oid": (re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"), "an oid (urn:oid:1.2.3)"),
    "uuid": (re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
             "a uuid (urn:uuid: and lower-case hex)"),
    "date": (re.compile(YEAR + MONTH_DAY), "a date (YYYY, YYYY-MM or YYYY-MM-DD)"),
    "dateTime": (re.compile(YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T" + TIME + ZONE + r")?)?)?"),
                 "a dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)"),
    "instant": (re.compile(YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T" + TIME + ZONE),
                "an instant (YYYY-MM-DDThh:mm:ss[.sss] with a time zone)"),
    "time": (re.compile(TIME), "a time (hh:mm:ss)"),
}
WHITESPACE = re.compile(r"\s+")


@cache
def tables() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(DATA.read_text())
    return loaded


def known_type(rtype: str) -> bool:
    return rtype in tables()


class _Issues(list):  # type: ignore[type-arg]
    """The issues found, and the references met on the way ((path, reference) of every Reference.reference)."""

    def __init__(self, references: list[tuple[str, str]] | None) -> None:
        super().__init__()
        self.references = references


def issues(resource: dict[str, Any], references: list[tuple[str, str]] | None = None) -> list[Issue]:
    """The problems found; `references`, when given, receives (path, value) of every Reference.reference."""
    out: list[Issue] = _Issues(references)
    rtype = resource.get("resourceType")
    if isinstance(rtype, str) and rtype in tables():
        try:
            _resource(resource, rtype, out)
        except RecursionError:
            return [Issue("error", "too-costly", f"{rtype}: the resource is nested too deeply to be checked",
                          (rtype,))]
    return out


def _add(out: list[Issue], path: str, text: str, code: str = "value") -> None:
    out.append(Issue("error", code, f"{path}: {text}", (path,)))


def _resource(res: dict[str, Any], path: str, out: list[Issue], contained: bool = False) -> None:
    rtype = res.get("resourceType")
    if not isinstance(rtype, str) or rtype not in tables():
        _add(out, path, f"{rtype!r} is not a FHIR R4 resource type", "structure")
        return
    _object(res, rtype, path, out, resource=True)
    if not contained:
        contained_list = res.get("contained")
        for i, c in enumerate(contained_list if isinstance(contained_list, list) else ()):
            if isinstance(c, dict) and "contained" in c:
                _add(out, f"{path}.contained[{i}].contained",
                     "a contained resource may not contain resources (dom-2)", "invariant")


def _object(obj: Any, tname: str, path: str, out: list[Issue], resource: bool = False) -> None:
    if not isinstance(obj, dict):
        _add(out, path, f"must be a JSON object ({tname}), not {_json_kind(obj)}", "structure")
        return
    table = tables().get(tname)
    if table is None:
        return
    if not obj or (resource and len(obj) == 1):
        if not resource:
            _add(out, path, "an element must have a value or children, not be empty (ele-1)", "invariant")
        return
    for key, value in obj.items():
        if resource and key == "resourceType":
            continue
        if key == "fhir_comments":  # comments carried over from XML (UK Core examples): kept as sent
            if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(c, str) for c in value)):
                _add(out, f"{path}.{key}", "fhir_comments must be a string or an array of strings", "structure")
            continue
        if key.startswith("_"):
            _primitive_extension(key, value, table, path, out)
            continue
        spec = table.get(key)
        if spec is None or key in ("!", "?"):
            _add(out, f"{path}.{key}", f"unknown element {key!r} in {tname}", "structure")
            continue
        typ, many, vs = spec
        sub = f"{path}.{key}"
        if many:
            if not isinstance(value, list):
                _add(out, sub, f"must be a JSON array (cardinality 0..*), not {_json_kind(value)}", "structure")
                continue
            if not value:
                _add(out, sub, "an empty array is not allowed: leave the element out (ele-1)", "invariant")
                continue
            if typ != "Resource" and tname != "Bundle.entry" and _primitive(typ):
                paired = obj.get("_" + key)
                for i, v in enumerate(value):
                    if v is None and isinstance(paired, list) and i < len(paired) and paired[i] is not None:
                        continue  # a repeating primitive with only an id/extension at this position
                    _value(v, typ, vs, f"{sub}[{i}]", out)
            else:
                for i, v in enumerate(value):
                    _value(v, typ, vs, f"{sub}[{i}]", out)
        else:
            if isinstance(value, list):
                _add(out, sub, "at most one value is allowed (cardinality 0..1), not an array", "structure")
                continue
            _value(value, typ, vs, sub, out)
    for name in table.get("!", ()):
        if name.endswith("[x]"):
            stem = name[:-3]
            if not any(k.startswith(stem) and k[len(stem):len(stem) + 1].isupper() for k in obj
                       if isinstance(k, str)):
                _add(out, f"{path}.{name}", f"{name} is required in {tname} (cardinality 1..)", "required")
        elif name not in obj and "_" + name not in obj:
            _add(out, f"{path}.{name}", f"{name} is required in {tname} (cardinality 1..)", "required")
    stems = table.get("?")
    if stems:
        for stem in stems:
            chosen = [k for k in obj if k.startswith(stem) and k[len(stem):len(stem) + 1].isupper() and k in table]
            if len(chosen) > 1:
                _add(out, f"{path}.{stem}[x]", f"only one of {', '.join(chosen)} may be given ({stem}[x] is 0..1)",
                     "structure")
    if tname == "Period":
        _period(obj, path, out)
    elif tname == "Extension":
        values = [k for k in obj if k.startswith("value")]
        if bool(values) == bool(obj.get("extension")):
            _add(out, path, "an extension must have either a value or extensions, not both and not neither "
                            "(ext-1)", "invariant")


def _primitive(typ: Any) -> bool:
    return isinstance(typ, str) and (typ in STRINGS or typ in INT_RANGES or typ in ("boolean", "decimal"))


def _primitive_extension(key: str, value: Any, table: dict[str, Any], path: str, out: list[Issue]) -> None:
    base = key[1:]
    sub = f"{path}.{key}"
    spec = table.get(base)
    if spec is None or not _primitive(spec[0]):
        _add(out, sub, f"unknown element {key!r}: no primitive element {base!r} here", "structure")
        return
    items = value if isinstance(value, list) and spec[1] else [value]
    if spec[1] and not isinstance(value, list):
        _add(out, sub, "must be a JSON array, as its primitive repeats", "structure")
        return
    for i, v in enumerate(items):
        if v is None and spec[1]:
            continue
        _object(v, "Element", f"{sub}[{i}]" if spec[1] else sub, out)


def _value(v: Any, typ: Any, vs: str | None, path: str, out: list[Issue]) -> None:
    if v is None:
        _add(out, path, "null is not allowed in FHIR JSON: leave the element out (ele-1)", "invariant")
        return
    if isinstance(typ, list):
        return
    if typ.startswith("@"):
        _object(v, typ[1:], path, out)
        return
    if typ == "Resource":
        if not isinstance(v, dict):
            _add(out, path, f"must be a resource (a JSON object), not {_json_kind(v)}", "structure")
            return
        _resource(v, path, out, contained=path.endswith("]") and ".contained[" in path)
        return
    if typ == "boolean":
        if not isinstance(v, bool):
            _add(out, path, f"must be a JSON boolean (true or false), not {_json_kind(v)}")
        return
    if typ in INT_RANGES:
        _integer(v, typ, path, out)
        return
    if typ == "decimal":
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            _add(out, path, f"a decimal must be a JSON number, not {_json_kind(v)}")
        elif isinstance(v, float) and not math.isfinite(v):
            _add(out, path, "a decimal must be a finite number")
        return
    if typ in STRINGS:
        _string(v, typ, vs, path, out)
        return
    _object(v, typ, path, out)
    if typ == "Reference" and isinstance(v, dict) and isinstance(v.get("reference"), str):
        refs = getattr(out, "references", None)
        if refs is not None:
            refs.append((f"{path}.reference", v["reference"]))
    if vs is not None and isinstance(v, dict):
        codings = v.get("coding") if typ == "CodeableConcept" else [v] if typ == "Coding" else None
        for i, c in enumerate(codings or ()):
            if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
                cpath = f"{path}.coding[{i}]" if typ == "CodeableConcept" else path
                problem = bindings.coding_problem(vs, c["system"], c["code"])
                if problem:
                    out.append(Issue("error", "code-invalid", f"{cpath}.code: {problem}", (f"{cpath}.code",)))


def _integer(v: Any, typ: str, path: str, out: list[Issue]) -> None:
    if isinstance(v, Decimal) and v.is_finite() and v.as_tuple().exponent == 0:  # type: ignore[comparison-overlap]
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        _add(out, path, f"an {typ} must be a JSON whole number, not {_json_kind(v)}")
        return
    lo, hi = INT_RANGES[typ]
    if not lo <= v <= hi:
        _add(out, path, f"{v} is outside the range of {typ} ({lo} to {hi})")


def _string(v: Any, typ: str, vs: str | None, path: str, out: list[Issue]) -> None:
    if not isinstance(v, str):
        _add(out, path, f"a {typ} must be a JSON string, not {_json_kind(v)}")
        return
    if v == "":
        _add(out, path, "an empty string is not allowed: leave the element out (ele-1)", "invariant")
        return
    fmt = FORMATS.get(typ)
    if fmt is not None:
        if not fmt[0].fullmatch(v):
            hint = " (a time needs a time zone)" if typ == "dateTime" and "T" in v and fmt[0].fullmatch(
                v + "Z") else ""
            _add(out, path, f"{v[:80]!r} is not {fmt[1]}{hint}")
            return
        if typ in ("date", "dateTime", "instant") and len(v) >= 10:
            try:
                date.fromisoformat(v[:10])
            except ValueError:
                _add(out, path, f"{v[:80]!r} is not a real calendar date")
                return
        if typ == "code" and vs is not None:
            problem = bindings.code_problem(vs, v)
            if problem:
                out.append(Issue("error", "code-invalid", f"{path}: {problem}", (path,)))
    elif typ == "base64Binary":
        bare = WHITESPACE.sub("", v)
        try:
            if len(bare) % 4:
                raise ValueError("length")
            base64.b64decode(bare, validate=True)
        except (binascii.Error, ValueError):
            _add(out, path, "is not valid base64 (base64Binary: A-Z, a-z, 0-9, '+', '/', '=' padding to a "
                            "multiple of 4)")
    elif typ == "xhtml":
        for rule, text in narrative_problems(v):
            out.append(Issue("error", "invariant", f"{path}: {text} ({rule})", (path,)))


def _period(obj: dict[str, Any], path: str, out: list[Issue]) -> None:
    """per-1: start <= end. Two times with zones compare as instants; otherwise at the precision both have
    (the date parts: "2024-05" and "2024-05-01" do not contradict each other)."""
    start, end = obj.get("start"), obj.get("end")
    if not (isinstance(start, str) and isinstance(end, str)):
        return
    wrong = False
    if len(start) > 10 and len(end) > 10:
        try:
            wrong = (datetime.fromisoformat(start) >
                     datetime.fromisoformat(end))
        except (ValueError, TypeError):  # (malformed: reported as such; a missing zone cannot compare)
            return
    else:
        n = min(len(start), len(end), 10)
        wrong = start[:n] > end[:n]
    if wrong:
        _add(out, path, f"the period ends ({end}) before it starts ({start}) (per-1: start <= end)", "invariant")


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float, Decimal)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    if isinstance(v, list):
        return "an array"
    return "an object"
