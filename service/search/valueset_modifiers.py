"""The `:in` and `:not-in` token modifiers (https://hl7.org/fhir/R4/search.html#modifiers): `code:in=[ValueSet]`
matches resources with a code in the ValueSet's expansion, `code:not-in=` those without one.

The ValueSet (a canonical URL, `url|version`, or `ValueSet/[id]`) is expanded through the request's repository
(service/validation/terminology.py: the ValueSets and CodeSystems the server holds, as the caller may see
them), handed to the query builder for the duration of a search by `expanding(...)` (Repository.search), and
becomes one `(system, code) IN (...)` condition on the token index: no OR-list, whatever the expansion's size
(capped at terminology.MAX_CODES). A ValueSet not held here is a 400 naming it, never an empty match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import false, tuple_

from service.fhir.outcome import bad_request
from service.search.values import cut

MODIFIERS = ("in", "not-in")
Expander = Callable[[str], set[tuple[str, str]] | None]
_expander: ContextVar[Expander | None] = ContextVar("sharedcare_valueset_expander", default=None)


@contextmanager
def expanding(expander: Expander) -> Iterator[None]:
    token = _expander.set(expander)
    try:
        yield
    finally:
        _expander.reset(token)


def condition(t: Any, name: str, mod: str, raw: str) -> Any:
    expander = _expander.get()
    if expander is None:
        raise bad_request(f"Search parameter {name!r}:{mod} is not available here")
    codes = expander(raw)
    if codes is None:
        raise bad_request(f"Search parameter {name}:{mod}: no ValueSet {raw!r} is held on this server",
                          code="not-found", expression=(f"{name}:{mod}",))
    if not codes:
        return false()
    return tuple_(t.c.system, t.c.code).in_(sorted({(cut(s), cut(c)) for s, c in codes}))
