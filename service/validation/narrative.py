"""The narrative rules txt-1 and txt-2 (https://hl7.org/fhir/R4/narrative.html#Narrative).

txt-1: the XHTML is a `<div>` in the XHTML namespace holding only the basic formatting elements and attributes
the specification allows (HTML 4.0 chapters 7-11 and 15, `<a>` with `name` or `href`, images, `style`); no
script, event handlers (`on...`), frames, forms, objects, `<style>`, DOCTYPE or entity declarations, and no
`javascript:`/`vbscript:`/`data:` links. txt-2: it has some non-whitespace content (text, or an element
inside the div).

Active content is refused, not sanitised: what a client sent is either stored as sent or refused with the
rule and the element path (a narrative silently changed would no longer say what its author wrote).
Parsed with the standard library's expat without any DTD (a DOCTYPE is refused before parsing, so no entity
can expand); only the five XML entities and character references are understood.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"

ELEMENTS = frozenset(["p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong", "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr", "address", "bdo", "kbd", "sub", "sup", "ul", "ol", "li", "dl", "dt", "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th", "td", "code", "samp", "img", "map", "area", "s", "strike", "u", "font", "center", "ins", "del"])
ATTRIBUTES = frozenset(["title", "style", "class", "id", "lang", "dir", "accesskey", "tabindex", "span", "width", "align", "valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan", "colspan"])
ELEMENT_ATTRIBUTES = frozenset(["a.href", "a.name", "a.title", "a.type", "a.rel", "a.rev", "a.hreflang", "a.charset", "a.shape", "a.coords", "a.target", "img.src", "img.alt", "img.height", "img.width", "img.border", "img.usemap", "img.ismap", "img.hspace", "img.vspace", "img.longdesc", "blockquote.cite", "q.cite", "ins.cite", "del.cite", "ins.datetime", "del.datetime", "table.border", "table.cellpadding", "table.cellspacing", "table.frame", "table.rules", "table.summary", "table.bgcolor", "td.nowrap", "th.nowrap", "td.bgcolor", "th.bgcolor", "tr.bgcolor", "ol.type", "ol.start", "ol.compact", "ul.type", "ul.compact", "li.type", "li.value", "map.name", "area.shape", "area.coords", "area.href", "area.alt", "area.nohref", "font.color", "font.size", "font.face", "col.bgcolor", "pre.width", "br.clear", "hr.size", "hr.noshade"])
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "usemap"})
SAFE_SCHEMES = ("http:", "https:", "mailto:", "tel:", "urn:", "ftp:")
SCHEME_RE = re.compile(r"^([a-z][a-z0-9+.\-]*):")
CONTROL_RE = re.compile(r"[\x00-\x20\x7f]+")
DECLARATION_RE = re.compile(r"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)|<\?", re.IGNORECASE)
STYLE_BAD = ("javascript:", "vbscript:", "expression(", "@import", "behavior:", "-moz-binding", "url(")


def _url_problem(value: str) -> str | None:
    bare = CONTROL_RE.sub("", value).lower()
    m = SCHEME_RE.match(bare)
    if m and not bare.startswith(SAFE_SCHEMES):
        return f"a {m.group(1)}: URL"
    return None


def problems(div: str) -> list[tuple[str, str]]:
    """[(rule, what is wrong)] for one Narrative.div; empty when it is allowed."""
    if DECLARATION_RE.search(div):
        return [("txt-1", "a DOCTYPE, entity declaration or processing instruction is not allowed")]
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        return [("txt-1", f"it is not well-formed XHTML ({exc})")]
    out: list[tuple[str, str]] = []
    if root.tag != f"{{{XHTML_NS}}}div":
        out.append(("txt-1", f"it must be a <div> in the XHTML namespace {XHTML_NS}"))
    has_content = False
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        ns, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        if ns != XHTML_NS:
            out.append(("txt-1", f"<{name}> is not in the XHTML namespace"))
            continue
        if name not in ELEMENTS:
            out.append(("txt-1", f"<{name}> is not an allowed XHTML element"))
            continue
        if el is not root:  # an element inside the div is content (the R4 examples have `<pre> </pre>`)
            has_content = True
        if (el.text and el.text.strip()) or (el is not root and el.tail and el.tail.strip()):
            has_content = True
        for attr, value in el.attrib.items():
            if attr.startswith("{"):
                ans, _, aname = attr[1:].partition("}")
                if ans == XML_NS and aname == "lang":
                    continue
                out.append(("txt-1", f"the attribute {aname!r} on <{name}> is in a foreign namespace"))
                continue
            low = attr.lower()
            if low.startswith("on"):
                out.append(("txt-1", f"the event handler attribute {attr!r} on <{name}> is not allowed"))
                continue
            if low not in ATTRIBUTES and f"{name}.{low}" not in ELEMENT_ATTRIBUTES:
                out.append(("txt-1", f"the attribute {attr!r} is not allowed on <{name}>"))
                continue
            if low in URL_ATTRIBUTES:
                bad = _url_problem(value)
                if bad is not None and not (name == "img" and low == "src" and
                                            CONTROL_RE.sub("", value).lower().startswith("data:image/")):
                    out.append(("txt-1", f"{bad} in {attr!r} on <{name}> is not allowed"))
            elif low == "style":
                squashed = CONTROL_RE.sub("", value).lower()
                if any(b in squashed for b in STYLE_BAD):
                    out.append(("txt-1", f"the style on <{name}> holds active content or an external URL"))
    if not out and not has_content:
        out.append(("txt-2", "the narrative has no non-whitespace content"))
    return out
