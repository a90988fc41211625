"""Full-text search: `_text` (the narrative, `text.div`) and `_content` (every string in the resource).

Indexing keeps one `sp_text` row per resource holding its words: case- and accent-free (NFKD, combining marks
dropped, casefolded, as string search does) and split on anything that is not a letter or digit, so that both
databases see the same words (PostgreSQL's `to_tsvector('simple', ...)`, SQLite's FTS5 `unicode61` tokenizer).
A search value's words must all be present (in any order; whole words); a comma separates alternatives (OR),
as for every parameter. The condition is a criterion like any other, so the access filter of the search
applies to it (service.search.run adds it to the same query).

Limits: words longer than 64 characters (base64 data, say) are not indexed, nor words past the first 20,000
of a resource.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

from sqlalchemy import Boolean, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

MAX_WORD = 64
MAX_WORDS = 20_000
_WORD = re.compile(r"[^\W_]+")
_TAG = re.compile(r"<[^>]*>")


def words(text: str) -> list[str]:
    if text.isascii():  # (most text: no accents to drop, and casefold is lower)
        folded = text.lower()
    else:
        folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()
    return [w for w in _WORD.findall(folded) if len(w) <= MAX_WORD]


def narrative_text(div: str) -> str:
    """The text of an XHTML narrative (tags dropped, entities decoded)."""
    return html.unescape(_TAG.sub(" ", div))


def _strings(node: Any, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "div" and isinstance(value, str):
                out.append(narrative_text(value))
            else:
                _strings(value, out)
    elif isinstance(node, list):
        for value in node:
            _strings(value, out)


def text_row(resource: dict[str, Any]) -> dict[str, str] | None:
    """{'narrative': words, 'content': words} for `sp_text`, or None when the resource has no words at all."""
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    narrative = words(narrative_text(div)) if isinstance(div, str) else []
    parts: list[str] = []
    _strings(resource, parts)
    content = words(" ".join(parts))
    if not content:
        return None
    return {"narrative": " ".join(narrative[:MAX_WORDS]), "content": " ".join(content[:MAX_WORDS])}


class TextMatch(ColumnElement[bool]):
    """`column` of the `sp_text` table (or alias) `table` holds every one of `terms`."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, table: Any, column: str, terms: list[str]) -> None:
        self.table = table
        self.column = column
        self.terms = terms


@compiles(TextMatch, "postgresql")
def _postgresql(element: TextMatch, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.table.c[element.column], **kw)
    query = compiler.process(bindparam(None, " ".join(element.terms), type_=String), **kw)
    return f"to_tsvector('simple'::regconfig, {col}) @@ plainto_tsquery('simple'::regconfig, {query})"


@compiles(TextMatch, "sqlite")
def _sqlite(element: TextMatch, compiler: Any, **kw: Any) -> str:
    match = " AND ".join(f'{element.column} : "{t}"' for t in element.terms)  # (terms are letters and digits)
    query = compiler.process(bindparam(None, match, type_=String), **kw)
    return f"{element.table.name}.rowid IN (SELECT rowid FROM sp_text_fts WHERE sp_text_fts MATCH {query})"


def text_ids(rtype: str | None, code: str, mod: str | None, value: str) -> Any:
    """SELECT res_id (or res_type, res_id at system level) of resources whose narrative (`_text`) or content
    (`_content`) holds every word of one of the comma-separated values."""
    from sqlalchemy import or_, select

    from service.fhir.outcome import bad_request
    from service.search.query import UnknownParameter, split_value, unescape
    from service.search.tables import sp_text as t

    if mod is not None:
        raise UnknownParameter(f"{code}:{mod}", f"{code} takes no modifiers")
    column = "narrative" if code == "_text" else "content"
    alternatives = []
    for one in split_value(value):
        terms = words(unescape(one))
        if not terms:
            raise bad_request(f"Search parameter {code!r}: {one!r} has no word to search for (letters or digits)")
        alternatives.append(TextMatch(t, column, terms[:20]))
    base = select(t.c.res_id) if rtype is not None else select(t.c.res_type, t.c.res_id)
    if rtype is not None:
        base = base.where(t.c.res_type == rtype)
    return base.where(or_(*alternatives))
