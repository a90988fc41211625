"""A SQL condition kept per process and used in many statements, with its cache key worked out once.

SQLAlchemy finds a statement's compiled form by a cache key it computes by walking the whole statement on every
execution. A search's access condition is most of that statement, and it is the same object for a caller until
their policy facts change (service.policy.sqlfilter keeps it), so walking it again and again was the largest
single cost of a search. `Kept` wraps such a condition: its part of the key and the bound parameters it holds are
computed once, when it is built; it compiles to the condition itself, in parentheses.

Sound because the key is SQLAlchemy's own for the wrapped condition: two conditions with equal keys compile to
the same SQL, and the parameters are extracted in the same order SQLAlchemy's walk would give them (parameters
with a value computed at execution, such as the relationship clock, still call their function each time).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement


class Kept(ColumnElement[bool]):
    inherit_cache = False  # (the key is `_gen_cache_key` below)
    type = Boolean()

    def __init__(self, inner: ColumnElement[bool], key: Any, bindparams: list[Any]) -> None:
        self.inner = inner
        self._kept_key = key
        self._kept_binds = tuple(bindparams)

    def _gen_cache_key(self, anon_map: Any, bindparams: list[Any]) -> Any:
        if bindparams is not None:
            bindparams.extend(self._kept_binds)
        return (Kept, self._kept_key)

    @property
    def _from_objects(self) -> Any:  # (what the wrapped condition reads: the statement's FROM list is unchanged)
        return self.inner._from_objects  # noqa: SLF001  (SQLAlchemy's protocol for elements)


def keep(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """`condition` as a Kept one, or itself when SQLAlchemy cannot cache it."""
    found = condition._generate_cache_key()  # noqa: SLF001  (SQLAlchemy's own key)
    if found is None:
        return condition
    return Kept(condition, found.key, list(found.bindparams))


@compiles(Kept)
def _compile(element: Kept, compiler: Any, **kw: Any) -> str:
    return "(" + compiler.process(element.inner, **kw) + ")"
