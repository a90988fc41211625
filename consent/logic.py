"""The small boolean algebra behind request mode (A.10), shared with resource mode.

A data-scope element of a provision (securityLabel, class, code, dataPeriod, data, CST/AUT actors) is a
set of alternative `Feature`s: an *atom* that holds when the resource carries any of them. Conditions
are kept in disjunctive normal form (DNF): a set of terms, each a set of literals ``(atom, positive)``.
In resource mode every atom is decided on the spot, so every DNF is `TRUE` or `FALSE`; in request mode
the atoms stay open and the decision becomes an `Expr`: a tree of `Branch`es over DNF conditions ending
in `Leaf` outcomes. The same code builds both, which is what makes the request-mode invariant hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consent.model import DENY, Feature, ResourceFacts, Verdict

Atom = frozenset[Feature]
Lit = tuple[Atom, bool]
Term = frozenset[Lit]
DNF = frozenset[Term]

TRUE: DNF = frozenset({frozenset()})
FALSE: DNF = frozenset()
MAX_TERMS = 256


class TooComplex(Exception):
    """A condition grew past `MAX_TERMS` terms (request mode then falls back to a DENY)."""


def const(value: bool) -> DNF:
    return TRUE if value else FALSE


def atom(features: Iterable[Feature]) -> DNF:
    a = frozenset(features)
    return frozenset({frozenset({(a, True)})}) if a else FALSE


def _norm_term(lits: Iterable[Lit]) -> Term | None:
    """Merge negatives (¬a ∧ ¬b = ¬(a∪b)), drop negated features from positives, None if contradictory."""
    pos: set[Atom] = set()
    neg: set[Feature] = set()
    for a, positive in lits:
        if positive:
            pos.add(a)
        else:
            neg |= a
    negf = frozenset(neg)
    reduced: set[Atom] = set()
    for a in pos:
        rest = a - negf
        if not rest:
            return None
        reduced.add(rest)
    minimal = {a for a in reduced if not any(b < a for b in reduced)}  # a ⊂ b: a implies b
    term: set[Lit] = {(a, True) for a in minimal}
    if negf:
        term.add((negf, False))
    return frozenset(term)


def _lit_implies(x: Lit, y: Lit) -> bool:
    (xa, xp), (ya, yp) = x, y
    if xp != yp:
        return False
    return xa <= ya if xp else ya <= xa


def _term_implies(t: Term, s: Term) -> bool:
    return all(any(_lit_implies(lt, ls) for lt in t) for ls in s)


def lit_key(lit: Lit) -> tuple[bool, list[tuple[str, str, str, str, bool]]]:
    return (not lit[1], sorted(f.sort_key for f in lit[0]))


def term_key(term: Term) -> tuple[int, list[tuple[bool, list[tuple[str, str, str, str, bool]]]]]:
    return (len(term), sorted(lit_key(lt) for lt in term))


def _reduce(t: Term, pos: Atom, negs: list[Atom]) -> Term:
    """Simplify a term beside single-literal terms: ``a ∨ (X ∧ ¬N) = a ∨ (X ∧ ¬(N∖a))`` and
    ``¬n ∨ (X ∧ p) = ¬n ∨ X`` when ``n ⊆ p``."""
    lits: list[Lit] = []
    for a, p in t:
        if not p and pos:
            a = a - pos
            if not a:
                continue
        if p and any(n <= a for n in negs):
            continue
        lits.append((a, p))
    n = _norm_term(lits)
    return t if n is None else n


def _norm_dnf(terms: Iterable[Term]) -> DNF:
    ts = set(terms)
    while True:
        if frozenset() in ts:
            return TRUE
        singles = [t for t in ts if len(t) == 1 and next(iter(t))[1]]
        if len(singles) > 1:  # a ∨ b = (a∪b): one atom
            union = frozenset().union(*(next(iter(t))[0] for t in singles))
            ts -= set(singles)
            ts.add(frozenset({(union, True)}))
        pos1: Atom = next((next(iter(t))[0] for t in ts if len(t) == 1 and next(iter(t))[1]), frozenset())
        negs = [next(iter(t))[0] for t in ts if len(t) == 1 and not next(iter(t))[1]]
        if pos1 and any(n <= pos1 for n in negs):
            return TRUE  # a ∨ ¬b with b ⊆ a
        reduced = {t if len(t) == 1 and next(iter(t))[1] else _reduce(t, pos1, negs) for t in ts}
        if reduced == ts:
            break
        ts = reduced
    order = sorted(ts, key=term_key)
    kept = [t for i, t in enumerate(order)
            if not any(j != i and _term_implies(t, s) and (j < i or not _term_implies(s, t))
                       for j, s in enumerate(order))]
    if len(kept) > MAX_TERMS:
        raise TooComplex(f"{len(kept)} terms")
    return frozenset(kept)


def or_(*xs: DNF) -> DNF:
    if any(x == TRUE for x in xs):
        return TRUE
    live = [x for x in xs if x]
    if not live:
        return FALSE
    if len(live) == 1:
        return live[0]
    return _norm_dnf(t for x in live for t in x)


def and_(*xs: DNF) -> DNF:
    result = TRUE
    for x in xs:
        if x == FALSE:
            return FALSE
        if x == TRUE:
            continue
        if result == TRUE:
            result = x
            continue
        terms = [n for s in result for t in x if (n := _norm_term(s | t)) is not None]
        result = _norm_dnf(terms)
        if result == FALSE:
            return FALSE
    return result


def not_(x: DNF) -> DNF:
    if x == TRUE:
        return FALSE
    if x == FALSE:
        return TRUE
    result = TRUE
    for term in x:
        result = and_(result, _norm_dnf(frozenset({(a, not p)}) for a, p in term))
    return result


def holds(x: DNF, r: ResourceFacts) -> bool:
    """Evaluate a condition on one resource (tests and the obligation backstop)."""
    return any(all(any(f.holds(r) for f in a) == p for a, p in term) for term in x)


# ---- decision trees ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    """An outcome. ``overridable``: a deny by a direct-care objection that break-glass may override."""

    verdict: Verdict
    basis: str
    reasons: tuple[str, ...] = ()
    overridable: bool = False
    break_glass: bool = False

    @property
    def deny(self) -> DNF:
        return const(self.verdict == DENY)


@dataclass(frozen=True, eq=False)
class Branch:
    cond: DNF
    then: Expr
    other: Expr
    deny: DNF = field(repr=False)


Expr = Leaf | Branch


def branch(cond: DNF, then: Expr, other: Expr) -> Expr:
    """``if cond then … else …``; collapses when the condition is decided (always, in resource mode)."""
    if cond == TRUE:
        return then
    if cond == FALSE:
        return other
    if then is other or (isinstance(then, Leaf) and then == other):
        return then
    deny = or_(and_(cond, then.deny), and_(not_(cond), other.deny))
    return Branch(cond, then, other, deny)


def region(e: Expr, pred: Callable[[Leaf], bool]) -> DNF:
    """The condition under which `e` ends in a leaf satisfying `pred`."""
    memo: dict[int, DNF] = {}

    def walk(x: Expr) -> DNF:
        if isinstance(x, Leaf):
            return const(pred(x))
        if id(x) not in memo:
            memo[id(x)] = or_(and_(x.cond, walk(x.then)), and_(not_(x.cond), walk(x.other)))
        return memo[id(x)]

    return walk(e)


def plain(e: Expr) -> Leaf:
    """The leaf reached by a resource that carries none of the features in question."""
    while isinstance(e, Branch):
        e = e.then if any(all(not p for _, p in term) for term in e.cond) else e.other
    return e


def leaves(e: Expr) -> list[Leaf]:
    """Distinct leaves in tree order (higher precedence first)."""
    out: list[Leaf] = []
    seen: set[int] = set()
    stack: list[Expr] = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, Leaf):
            if x not in out:
                out.append(x)
        else:
            stack.extend((x.other, x.then))
    return out


def map_leaves(e: Expr, f: Callable[[Leaf], Leaf]) -> Expr:
    memo: dict[int, Expr] = {}

    def walk(x: Expr) -> Expr:
        if isinstance(x, Leaf):
            return f(x)
        if id(x) not in memo:
            memo[id(x)] = branch(x.cond, walk(x.then), walk(x.other))
        return memo[id(x)]

    return walk(e)
