"""FHIR XML <-> FHIR JSON (https://hl7.org/fhir/R4/xml.html), for `application/fhir+xml` in and out.

The stored form stays JSON; XML is a rendering of it. Element order, cardinality and primitive types come from
the base specification's models (fhir.resources R4B: `elements_sequence`, the field types); decimals keep their
text both ways (never through a float). Rules: a primitive is `<name value="..."/>` whose JSON extension
(`_name`: id, extension) becomes its attribute and children; `id` of an element and `url` of an Extension are
attributes (a resource's id is an element); a contained resource is wrapped in its element; the narrative's
`div` is XHTML, copied as it is. A document with a DTD is refused (no entities: no XML bombs, no external reads).
A resource type the models do not know (the few R4 types missing from R4B) is refused in XML (415), as is an
element they do not define.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from functools import cache
from typing import Any

import orjson

from service.fhir.outcome import OperationOutcomeError, bad_request

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"}


class Field:
    __slots__ = ("kind", "many", "model", "name")

    def __init__(self, name: str, many: bool, kind: str, model: str | None) -> None:
        self.name, self.many, self.kind, self.model = name, many, kind, model  # kind: complex|resource|xhtml|
        #                                                                       bool|int|decimal|str


def _model_class(name: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(name)
    except Exception:  # noqa: BLE001  (a type the models do not have)
        return None


@cache
def fields(model_name: str) -> dict[str, Field] | None:
    """The elements of a type (or backbone element), in definition order, or None when the models lack it."""
    cls = _model_class(model_name)
    if cls is None:
        return None
    by_alias = {f.alias or k: f for k, f in cls.model_fields.items()}
    out: dict[str, Field] = {}
    for name in cls.elements_sequence():
        f = by_alias.get(name)
        if f is None:
            continue
        text = str(f.annotation)
        many = "List[" in text
        m = re.search(r"abc\.(\w+)Type", text)
        if m is not None:
            kind, sub = ("resource", None) if m.group(1) == "Resource" else ("complex", m.group(1))
        elif "Xhtml" in text:
            kind, sub = "xhtml", None
        elif "bool" in text:
            kind, sub = "bool", None
        elif "decimal.Decimal" in text:
            kind, sub = "decimal", None
        elif re.search(r"\[int,|\bint\b", text):
            kind, sub = "int", None
        else:
            kind, sub = "str", None
        out[name] = Field(name, many, kind, sub)
    return out


def xml_type_check(rtype: str) -> None:
    """415 for a resource type XML cannot carry here (before a request for it in XML is run)."""
    from service.fhir.types import RESOURCE_TYPES

    if rtype in RESOURCE_TYPES and fields(rtype) is None:
        raise _unknown_type(rtype)


def _unknown_type(rtype: str) -> OperationOutcomeError:
    return OperationOutcomeError(415, "not-supported", f"{rtype} cannot be exchanged as XML here (its definition is "
                                 "not in the models this server uses); use application/fhir+json")


# -- JSON -> XML ---------------------------------------------------------------------------------------------
def _esc(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("\r", "&#xD;").replace("\n", "&#xA;").replace("\t", "&#x9;"))


def _prim(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def to_xml(content: bytes) -> bytes:
    """A FHIR JSON resource as FHIR XML (UTF-8)."""
    res = json.loads(content, parse_float=Decimal)
    out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']
    _resource(res, out, top=True)
    return "".join(out).encode()


def _resource(res: dict[str, Any], out: list[str], top: bool = False) -> None:
    rtype = res.get("resourceType")
    if not isinstance(rtype, str) or fields(rtype) is None:
        raise _unknown_type(str(rtype))
    out.append(f'<{rtype} xmlns="{FHIR_NS}">')
    _children(res, rtype, out, resource=True)
    out.append(f"</{rtype}>")


def _children(obj: dict[str, Any], model: str, out: list[str], resource: bool = False) -> None:
    spec = fields(model)
    if spec is None:
        raise _unknown_type(model)
    extra = set(obj) - set(spec) - {"resourceType"} - {f"_{n}" for n in spec}
    extra.discard("fhir_comments")
    if extra:
        raise OperationOutcomeError(415, "not-supported", f"{model} has no element {min(extra)!r} in the "
                                    "definitions XML is written from; use application/fhir+json")
    for name, f in spec.items():
        if not resource and (name == "id" or (model == "Extension" and name == "url")):
            continue  # (attributes)
        value, ext = obj.get(name), obj.get(f"_{name}")
        if value is None and ext is None:
            continue
        if f.many:
            values = value if isinstance(value, list) else [value] if value is not None else []
            exts = ext if isinstance(ext, list) else []
            for i in range(max(len(values), len(exts))):
                _one(name, f, values[i] if i < len(values) else None, exts[i] if i < len(exts) else None, out)
        else:
            _one(name, f, value, ext, out)


def _one(name: str, f: Field, value: Any, ext: Any, out: list[str]) -> None:
    if f.kind == "resource":
        out.append(f"<{name}>")
        _resource(value, out)
        out.append(f"</{name}>")
    elif f.kind == "complex":
        attrs = _attrs(value, f.model)
        out.append(f"<{name}{attrs}>")
        _children(value, str(f.model), out)
        out.append(f"</{name}>")
    elif f.kind == "xhtml":
        out.append(_div(str(value)))
    else:
        attrs = ""
        if isinstance(ext, dict) and ext.get("id") is not None:
            attrs += f' id="{_esc(str(ext["id"]))}"'
        if value is not None:
            attrs += f' value="{_esc(_prim(value))}"'
        if isinstance(ext, dict) and ext.get("extension"):
            out.append(f"<{name}{attrs}>")
            _children({"extension": ext["extension"]}, "Element", out)
            out.append(f"</{name}>")
        else:
            out.append(f"<{name}{attrs}/>")


def _attrs(value: dict[str, Any], model: str | None) -> str:
    attrs = ""
    if value.get("id") is not None:
        attrs += f' id="{_esc(str(value["id"]))}"'
    if model == "Extension" and value.get("url") is not None:
        attrs += f' url="{_esc(str(value["url"]))}"'
    return attrs


def _div(text: str) -> str:
    """The narrative's XHTML, re-serialised from its parse (so the document is well-formed whatever was stored)."""
    if "<!" in text:
        text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    try:
        if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
            raise ET.ParseError("a DTD")
        return _xhtml(ET.fromstring(text), top=True)
    except (ET.ParseError, OperationOutcomeError):
        raise OperationOutcomeError(415, "not-supported", "This resource's narrative is not well-formed XHTML, so it "
                                    "cannot be rendered as XML; use application/fhir+json") from None


# -- XML -> JSON ---------------------------------------------------------------------------------------------
def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def to_json(body: bytes) -> bytes:
    """A FHIR XML resource as FHIR JSON bytes (decimals as written); 400 for what is not FHIR XML."""
    head = body[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in body.upper():
        raise bad_request("The XML has a DTD or entity declarations, which are not accepted", code="security")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise bad_request(f"The body is not well-formed XML: {exc}", code="structure") from None
    res = _read_resource(root)
    return orjson.dumps(res)


def _read_resource(elem: ET.Element) -> dict[str, Any]:
    ns, rtype = _local(elem.tag)
    if ns != FHIR_NS:
        raise bad_request(f"<{rtype}> is not in the FHIR namespace ({FHIR_NS})", code="structure")
    if fields(rtype) is None:
        raise _unknown_type(rtype)
    out: dict[str, Any] = {"resourceType": rtype}
    _read_children(elem, rtype, out, resource=True)
    return out


def _read_children(elem: ET.Element, model: str, out: dict[str, Any], resource: bool = False) -> None:
    spec = fields(model)
    if spec is None:
        raise _unknown_type(model)
    if not resource:
        if elem.get("id") is not None:
            out["id"] = elem.get("id")
        if model == "Extension" and elem.get("url") is not None:
            out["url"] = elem.get("url")
    for child in elem:
        ns, name = _local(child.tag)
        f = spec.get(name)
        if f is None or (ns != FHIR_NS and f.kind != "xhtml"):
            raise bad_request(f"{model} has no element <{name}>", code="structure")
        value, ext = _read_value(child, f)
        if f.many:
            out.setdefault(name, []).append(value)
            exts = out.setdefault(f"_{name}", [])
            exts.append(ext)
        else:
            if value is not None:
                out[name] = value
            if ext is not None:
                out[f"_{name}"] = ext
    for key in [k for k in out if k.startswith("_")]:  # list extensions: only when any item has one
        if isinstance(out[key], list):
            if not any(out[key]):
                del out[key]
            if key[1:] in out and isinstance(out[key[1:]], list) and all(v is None for v in out[key[1:]]):
                del out[key[1:]]


def _read_value(child: ET.Element, f: Field) -> tuple[Any, Any]:
    if f.kind == "resource":
        inner = list(child)
        if len(inner) != 1:
            raise bad_request(f"<{_local(child.tag)[1]}> must hold exactly one resource", code="structure")
        return _read_resource(inner[0]), None
    if f.kind == "complex":
        obj: dict[str, Any] = {}
        _read_children(child, str(f.model), obj)
        return obj, None
    if f.kind == "xhtml":
        return _xhtml(child, top=True), None
    raw = child.get("value")
    value: Any = None if raw is None else _typed(raw, f)
    ext: dict[str, Any] = {}
    if child.get("id") is not None:
        ext["id"] = child.get("id")
    kids = list(child)
    if kids:
        holder: dict[str, Any] = {}
        _read_children(child, "Element", holder)
        holder.pop("id", None)
        if holder.get("extension"):
            ext["extension"] = holder["extension"]
    return value, (ext or None)


def _typed(raw: str, f: Field) -> Any:
    if f.kind == "bool":
        if raw not in ("true", "false"):
            raise bad_request(f"<{f.name} value={raw!r}> is not a boolean (true or false)")
        return raw == "true"
    if f.kind == "int":
        if not re.fullmatch(r"-?\d+", raw):
            raise bad_request(f"<{f.name} value={raw!r}> is not an integer")
        return int(raw)
    if f.kind == "decimal":
        if not re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?", raw):
            raise bad_request(f"<{f.name} value={raw!r}> is not a decimal")
        return orjson.Fragment(raw.encode())  # (its text, never a float)
    return raw


def _xhtml(elem: ET.Element, top: bool = False) -> str:
    ns, name = _local(elem.tag)
    if ns != XHTML_NS:
        raise bad_request(f"<{name}> in the narrative is not XHTML", code="structure")
    attrs = ' xmlns="http://www.w3.org/1999/xhtml"' if top else ""
    for k, v in elem.attrib.items():
        kns, kname = _local(k)
        if kns == "http://www.w3.org/XML/1998/namespace":
            kname = f"xml:{kname}"
        attrs += f' {kname}="{_esc_attr(v)}"'
    inner = _esc_text(elem.text or "") + "".join(_xhtml(c) + _esc_text(c.tail or "") for c in elem)
    return f"<{name}{attrs}>{inner}</{name}>" if inner else f"<{name}{attrs}/>"


def _esc_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_attr(text: str) -> str:
    return _esc_text(text).replace('"', "&quot;")
