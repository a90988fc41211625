"""The policy as one SQL condition on `resource` rows, so a search's count, paging and includes never see
what the caller may not (see service/search/filter.py for how the engine uses it).

A row is visible when any of:
- it is in no patient's compartment (nothing about a person to protect; scopes still apply);
- it was written by the caller's organisation (consent rule 2c, only for direct care);
- it is a Task or ServiceRequest addressed to the caller (owner / performer): a referral to accept;
- it is in the compartment of a patient the caller may see (care relationship, open break-glass grant,
  or any patient for break-glass and secondary use), not on the excluded list (the National Data
  Opt-out for secondary use), not dropped by the person's consents (the decision point's REDACT
  obligations, per patient, translated below) and not carrying a restricted label.

Obligations are translated feature by feature: security labels, resource types, `code`, instance ids,
references and authoring organisations have index rows; a feature the indexes cannot answer (a
consent's dataPeriod) is translated so that SQL drops less, never more, and the per-resource check after
paging (the same decision point, resource mode) hides the rest (the engine then leaves out the total).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, false, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from consent import Feature, Obligation
from consent import codes as ccodes
from service.kept_clause import keep
from service.policy.authorship import SEARCH_PARAM as AUTHOR_PARAM
from service.search.tables import sp_compartment as C
from service.search.tables import sp_reference as REF
from service.search.tables import sp_token as TOK
from service.storage.tables import resource as R

ADDRESSED = {"Task": ("owner",), "ServiceRequest": ("performer",)}
# Features whose index rows hold exactly what the decision point reads from the resource.
EXACT = frozenset({"security", "class", "instance", "author"})


def exact(obligations: Iterable[Obligation]) -> bool:
    """Whether these obligations translate to SQL without approximation."""
    for o in obligations:
        features = set(o.codes) | set(o.except_any_of_codes) | {f for c in o.all_of for f in c.any_of}
        if any(f.on not in EXACT for f in features):
            return False
    return True


def _probe(stmt: Any) -> Any:
    """EXISTS over a per-row probe. `LIMIT 1` keeps PostgreSQL from turning it into a hashed subplan that
    materialises every matching row of the type (e.g. the compartments of a whole caseload) for each search;
    evaluated per candidate row it is one or two index probes."""
    return exists(stmt.limit(1))


def _same_row(table: Any, rtype: str | None) -> ColumnElement[bool]:
    first = table.c.res_type == rtype if rtype is not None else table.c.res_type == R.c.res_type
    return and_(first, table.c.res_id == R.c.res_id)


def _split(token: str) -> tuple[str, str]:
    system, _, code = token.rpartition("|")
    return system, code


def _ref_match(keys: Iterable[str]) -> ColumnElement[bool] | None:
    conds = []
    refs = sorted(k for k in keys if "|" not in k and "/" in k)
    idents = sorted(k for k in keys if "|" in k)
    by_type: dict[str, list[str]] = {}
    for k in refs:
        t, i = k.split("/", 1)
        by_type.setdefault(t, []).append(i)
    for t, ids in sorted(by_type.items()):
        # (one id, the usual case, as `=`: an IN list is rewritten on every execution)
        conds.append(and_(REF.c.target_type == t, REF.c.target_id == ids[0] if len(ids) == 1
                          else REF.c.target_id.in_(ids)))
    for k in idents:
        s, v = _split(k)
        conds.append(and_(REF.c.ident_system == s, REF.c.ident_value == v))
    return or_(*conds) if conds else None


def authored_by(keys: frozenset[str], rtype: str | None) -> ColumnElement[bool]:
    match = _ref_match(keys)
    if match is None:
        return false()
    return _probe(select(REF.c.res_id).where(_same_row(REF, rtype), REF.c.param == AUTHOR_PARAM, match))


def in_compartment(patients: Any, rtype: str | None) -> ColumnElement[bool]:
    """`patients`: a subquery or a collection of Patient ids."""
    return _probe(select(C.c.res_id).where(_same_row(C, rtype), C.c.patient_id.in_(patients)))


def no_patient(rtype: str | None) -> ColumnElement[bool]:
    """Nobody's data: the row's own primary owner (`resource.patient_id`, set from the same owners as its
    compartment rows). Not a NOT EXISTS on `sp_compartment`: inside the condition's OR, PostgreSQL ran that as a
    hashed subplan reading every compartment row of the type for each page (an export's pages grew with the
    record: 350 ms a page at 300,000 resources)."""
    return R.c.patient_id.is_(None)


def has_label(labels: Iterable[tuple[str, str]], rtype: str | None) -> ColumnElement[bool]:
    conds = [and_(TOK.c.system == s, TOK.c.code == c) if s else TOK.c.code == c for s, c in sorted(labels)]
    if not conds:
        return false()
    return _probe(select(TOK.c.res_id).where(_same_row(TOK, rtype), TOK.c.param == "_security", or_(*conds)))


def feature_sql(f: Feature, rtype: str | None) -> ColumnElement[bool] | None:
    """SQL that holds when the row carries the feature; None when the indexes cannot tell."""
    if f.on == "security":
        s, c = _split(f.value)
        return _probe(select(TOK.c.res_id).where(_same_row(TOK, rtype), TOK.c.param == "_security",
                                                 TOK.c.system == s, TOK.c.code == c))
    if f.on == "code":
        s, c = _split(f.value)
        cond = [TOK.c.code == c] + ([TOK.c.system == s] if s else [])
        return _probe(select(TOK.c.res_id).where(_same_row(TOK, rtype), TOK.c.param == "code", *cond))
    if f.on == "class":
        s, c = _split(f.value)
        if s == ccodes.RESOURCE_TYPES:
            if rtype is not None:
                return true() if rtype == c else false()
            return R.c.res_type == c
        return false()
    if f.on == "instance":
        t, _, i = f.value.partition("/")
        if rtype is not None and rtype != t:
            return false()
        return and_(R.c.res_type == t, R.c.res_id == i)
    if f.on == "related":
        t, _, i = f.value.partition("/")
        return _probe(select(REF.c.res_id).where(_same_row(REF, rtype), REF.c.target_type == t,
                                                 REF.c.target_id == i))
    if f.on == "author":
        return authored_by(frozenset({f.value}), rtype)
    return None  # "date": the per-resource check decides


def _any(features: Iterable[Feature], rtype: str | None, unknown_is: bool) -> ColumnElement[bool]:
    """The row carries one of `features`; an unknown feature counts as `unknown_is`."""
    parts = []
    for f in sorted(features, key=lambda f: f.sort_key):
        s = feature_sql(f, rtype)
        if s is None:
            if unknown_is:
                return true()
            continue
        parts.append(s)
    return or_(*parts) if parts else false()


def drops(o: Obligation, rtype: str | None) -> ColumnElement[bool]:
    """SQL for 'this obligation drops the row', never stronger than the decision point's own test."""
    if o.codes:
        cond = _any(o.codes, rtype, unknown_is=False)
    elif o.except_any_of_codes:
        cond = not_(_any(o.except_any_of_codes, rtype, unknown_is=True))
    else:
        parts = [not_(_any(c.any_of, rtype, unknown_is=True)) if c.negate else _any(c.any_of, rtype, unknown_is=False)
                 for c in o.all_of]
        cond = and_(*parts) if parts else true()
    if o.unless_authored_by:
        cond = and_(cond, not_(authored_by(o.unless_authored_by, rtype)))
    return cond


@dataclass(frozen=True)
class Redaction:
    """Drop the rows of these patients that one of the obligations drops."""

    patients: frozenset[str]
    obligations: tuple[Obligation, ...] = ()
    drop_all: bool = False  # the decision was DENY: drop everything of theirs (but what the caller wrote)
    unless: frozenset[str] = frozenset()


_SQL_MEMO: dict[tuple[Any, ...], ColumnElement[bool]] = {}  # SQL expressions are immutable: safe to share
_SQL_MEMO_SIZE = 4096


@dataclass(eq=False)
class PolicyCondition:
    """What `PolicyGuard.search_filter` hands the engine (as `SearchFilter.where`). Hashed by identity: the
    engine groups the types that share one condition."""

    patients: Any = None  # ids or a subquery of who may be seen; None: any patient
    exclude: Any = None  # ids or a subquery of patients to leave out (National Data Opt-out)
    redactions: tuple[Redaction, ...] = ()
    own: frozenset[str] = frozenset()
    addressed_to: frozenset[str] = frozenset()
    hidden_labels: frozenset[tuple[str, str]] = frozenset()
    notes: list[str] = field(default_factory=list)
    exact: bool = True  # the SQL decides exactly what the per-resource decision would (no backstop needed)
    # What `patients` and `exclude` were built from, when that determines them (then the SQL is built once per
    # process for equal conditions, see `sql`): a search's condition is the same for a caller until a consent,
    # a relationship set or a grant changes it, and building it was a large part of a search's time.
    key: tuple[Any, ...] | None = None

    def sql(self, rtype: str | None) -> ColumnElement[bool]:
        if self.key is None:
            return self._sql(rtype)
        memo_key = (self.key, self.redactions, self.own, self.addressed_to, self.hidden_labels, rtype)
        found = _SQL_MEMO.get(memo_key)
        if found is None:
            if len(_SQL_MEMO) >= _SQL_MEMO_SIZE:
                _SQL_MEMO.clear()  # (rarely: a process serving more distinct conditions than that)
            found = _SQL_MEMO[memo_key] = keep(self._sql(rtype))  # (its cache key worked out once)
        return found

    def _sql(self, rtype: str | None) -> ColumnElement[bool]:
        person = [in_compartment(self.patients, rtype) if self.patients is not None else true()]
        if self.exclude is not None:
            person.append(not_(in_compartment(self.exclude, rtype)))
        for r in self.redactions:
            drop = true() if r.drop_all else or_(*[drops(o, rtype) for o in r.obligations]) if r.obligations \
                else false()
            if r.drop_all and r.unless:
                drop = not_(authored_by(r.unless, rtype))
            person.append(not_(and_(in_compartment(sorted(r.patients), rtype), drop)))
        if self.hidden_labels:
            person.append(not_(has_label(self.hidden_labels, rtype)))
        alternatives = [no_patient(rtype), and_(*person)]
        if self.own:
            alternatives.append(authored_by(self.own, rtype))
        addressed = self._addressed(rtype)
        if addressed is not None:
            alternatives.append(addressed)
        return or_(*alternatives)

    def _addressed(self, rtype: str | None) -> ColumnElement[bool] | None:
        if not self.addressed_to:
            return None
        types = [t for t in ADDRESSED if rtype is None or rtype == t]
        match = _ref_match(self.addressed_to)
        if not types or match is None:
            return None
        parts = [and_(R.c.res_type == t, _probe(select(REF.c.res_id).where(
            _same_row(REF, rtype), REF.c.param.in_(ADDRESSED[t]), match))) for t in types]
        return or_(*parts)
