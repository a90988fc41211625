"""`decide`: the algorithm of consent-semantics.md section A, step by step.

Per purpose of use (a request with several is permitted only if each is): hard rules (2a NOPAT, 2b the
patient's own record, 2c an organisation's own record; plus the administrator bypass of the demo
interfaces), then the candidate consents (3) newest first with ties denying (7), each decided by its
provision tree (4-6), then the default (8); break-glass (9) relabels overridable denials. In request mode
(no resource) the same tree keeps its data-scope conditions open and is turned into obligations (10).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from consent import codes
from consent.logic import (
    DNF,
    FALSE,
    TRUE,
    Expr,
    Leaf,
    TooComplex,
    and_,
    atom,
    branch,
    const,
    leaves,
    lit_key,
    map_leaves,
    plain,
    region,
    term_key,
)
from consent.model import (
    ADMIN,
    DEFAULT_CONFIG,
    DENY,
    PATIENT,
    PERMIT,
    RELATED_PERSON,
    Condition,
    Config,
    Decision,
    Feature,
    Obligation,
    Request,
    ResourceFacts,
)
from consent.parse import ParsedConsent, Provision, parse_consent

_NOPAT = frozenset({Feature("security", codes.NOPAT)})


@dataclass(frozen=True)
class _Ctx:
    req: Request
    cfg: Config
    purpose: str | None  # token; None when the request states no purpose
    code: str | None  # the bare v3-ActReason code
    action: str
    patient_self: bool
    proxy: bool

    @property
    def direct_care(self) -> bool:
        return self.code in self.cfg.direct_care_purposes

    @property
    def secondary(self) -> bool:
        return self.code in self.cfg.research_purposes | self.cfg.planning_purposes


def _context(req: Request, purpose: str | None, cfg: Config) -> _Ctx:
    actor = req.actor
    tok = codes.purpose_token(purpose) if purpose else None
    code = codes.code_of(tok) if tok and tok.startswith(codes.ACT_REASON + "|") else None
    patient = codes.normalise_reference(req.patient)
    nhs = codes.token(codes.NHS_NUMBER, req.nhs_number) if req.nhs_number else None
    is_self = actor.kind == PATIENT and (patient in actor.match_keys or (nhs is not None and nhs in actor.match_keys))
    proxy = actor.kind == RELATED_PERSON or (actor.kind == PATIENT and not is_self)
    return _Ctx(req, cfg, tok, code, codes.action_token(req.action), is_self, proxy)


# ---- provision matching (A.4, C1) ---------------------------------------------------------------------

def _data(ctx: _Ctx, group: frozenset[Feature]) -> DNF:
    """A data-scope element: decided in resource mode, an open atom in request mode."""
    r = ctx.req.resource
    if r is not None:
        return const(any(f.holds(r) for f in group))
    if ctx.req.resource_type:  # a searched type decides the resource-type classes
        wanted = codes.resource_type_token(ctx.req.resource_type)
        types = {f for f in group if f.on == "class" and f.value.startswith(codes.RESOURCE_TYPES + "|")}
        if any(f.value == wanted for f in types):
            return TRUE
        group = group - types
    return atom(group)


def _match(ctx: _Ctx, node: Provision) -> DNF:
    """Every element present must match (AND; repetitions OR; absent = any)."""
    deny = node.type != "permit"
    if node.period is not None and not node.period.contains(ctx.req.now):
        return FALSE
    if node.purposes is not None and (node.purposes.isdisjoint({ctx.purpose}) if ctx.purpose else not deny):
        return FALSE
    if node.actions is not None and ctx.action not in node.actions:
        return FALSE
    result = TRUE
    if node.actor is not None and node.actor.requester.isdisjoint(ctx.req.actor.match_keys):
        result = _data(ctx, node.actor.authors)
    for group in node.data_elements:
        if result == FALSE:
            break
        result = and_(result, _data(ctx, group))
    return result


def _node(ctx: _Ctx, consent: ParsedConsent, node: Provision) -> Expr:
    """The outcome of a matched node: its type, unless children match; then deny-overrides among the
    matched children, recursively (the deepest matched exception wins)."""
    own = Leaf(PERMIT if node.type == "permit" else DENY, consent.basis,
               (f"{consent.basis} {node.path} ({node.type}) decides",),
               overridable=consent.overridable and node.type != "permit")
    kids = [(m, _node(ctx, consent, c)) for c in node.children if (m := _match(ctx, c)) != FALSE]
    expr: Expr = own
    for m, e in reversed(kids):
        expr = branch(m, e, expr)
    for m, e in reversed(kids):
        expr = branch(and_(m, e.deny), e, expr)
    return expr


# ---- consents, defaults, break-glass (A.3, A.5, A.7-A.9) --------------------------------------------

def _candidate(ctx: _Ctx, c: ParsedConsent) -> bool:
    if c.status != "active" or c.scopes.isdisjoint(codes.EVALUATED_SCOPES):
        return False
    if c.patient_ref is not None and c.patient_ref == codes.normalise_reference(ctx.req.patient):
        return True
    return bool(c.patient_nhs) and c.patient_nhs == ctx.req.nhs_number


def _default(ctx: _Ctx) -> Leaf:
    kind = ctx.req.actor.kind
    if ctx.proxy:
        return Leaf(DENY, "default:proxy", ("no applicable consent; a proxy needs a grant",))
    if ctx.direct_care and kind in ctx.cfg.direct_care_kinds:
        return Leaf(PERMIT, "default:direct-care", (f"no applicable consent; {ctx.code} by a {kind} is direct care",))
    if ctx.secondary:
        if ctx.req.ndoo:
            return Leaf(DENY, "default:ndoo", (f"no applicable consent; {ctx.code} and a National Data Opt-out",))
        return Leaf(PERMIT, "default:secondary-use", (f"no applicable consent; {ctx.code}, no National Data Opt-out",))
    return Leaf(DENY, "default:no-basis", (f"no applicable consent and no default permits {ctx.code} by a {kind}",))


def _consents(ctx: _Ctx, consents: Sequence[ParsedConsent]) -> Expr:
    cands = [c for c in consents if _candidate(ctx, c)]
    usable = sorted((c for c in cands if c.computable and c.root is not None and c.date_time is not None),
                    key=lambda c: (c.date_time, c.id), reverse=True)
    expr: Expr = _default(ctx)
    groups = [list(g) for _, g in itertools.groupby(usable, key=lambda c: c.date_time)]
    for group in reversed(groups):  # build from the oldest: a newer applicable consent is tested first
        parts = [(m, _node(ctx, c, c.root)) for c in sorted(group, key=lambda c: c.id)
                 if c.root is not None and (m := _match(ctx, c.root)) != FALSE]
        for m, e in reversed(parts):
            expr = branch(m, e, expr)
        for m, e in reversed(parts):  # equal instants: any applicable deny wins
            expr = branch(and_(m, e.deny), e, expr)
    for u in reversed([c for c in cands if not c.computable]):
        root = u.root or Provision(path="Consent.provision", type=None)
        why = f"{u.basis} cannot be evaluated: " + "; ".join(u.uncomputable)
        expr = branch(_match(ctx, root), Leaf(DENY, "rule:uncomputable", (why,), overridable=u.overridable), expr)
    if ctx.code == ctx.cfg.btg_purpose and ctx.cfg.btg_override and ctx.req.actor.kind in ctx.cfg.direct_care_kinds:
        expr = map_leaves(expr, _override)
    return expr


def _override(leaf: Leaf) -> Leaf:
    if leaf.verdict != DENY or not leaf.overridable:
        return leaf
    return Leaf(PERMIT, "rule:btg-override", leaf.reasons + (f"break-glass overrides {leaf.basis}",),
                break_glass=True)


def _policy(ctx: _Ctx, consents: Sequence[ParsedConsent]) -> Expr:
    """Everything except rule 2c (handled by the caller, as a check or as an exemption)."""
    if ctx.patient_self and ctx.req.action in ctx.cfg.patient_own_actions:
        inner: Expr = Leaf(PERMIT, "rule:patient-own-record", ("the patient reads their own record",))
    else:
        inner = _consents(ctx, consents)
    if ctx.patient_self or ctx.proxy:
        nopat = Leaf(DENY, "rule:nopat", ("labelled NOPAT: not for the patient or a proxy",))
        return branch(_data(ctx, _NOPAT), nopat, inner)
    return inner


# ---- request mode (A.10) ----------------------------------------------------------------------------

def _obligations(cond: DNF, basis: str, own: frozenset[str], dropped: frozenset[Feature]) -> list[Obligation]:
    """One obligation per term; ``dropped``: features earlier ``codes`` obligations already drop."""
    out: list[Obligation] = []
    for term in sorted(cond, key=term_key):
        lits = sorted(term, key=lit_key)
        if len(lits) == 1 and lits[0][1]:
            if lits[0][0] - dropped:
                out.append(Obligation(codes=lits[0][0] - dropped, unless_authored_by=own, basis=basis))
        elif len(lits) == 1:
            out.append(Obligation(except_any_of_codes=lits[0][0], unless_authored_by=own, basis=basis))
        else:
            conds = tuple(Condition(a, negate=not p) for a, p in lits)
            out.append(Obligation(all_of=conds, unless_authored_by=own, basis=basis))
    return out


def _plan(expr: Expr, own: frozenset[str]) -> Decision:
    every = leaves(expr)
    typical = plain(expr)  # the basis reported is the one a resource with no special features gets
    if expr.deny == TRUE and not own:
        first = typical if typical.verdict == DENY else next(x for x in every if x.verdict == DENY)
        return Decision(DENY, first.basis, reasons=first.reasons + ("no resource could be permitted",))
    obligations: list[Obligation] = []
    done: set[str] = set()
    emitted: DNF = FALSE
    for basis in dict.fromkeys(x.basis for x in every if x.verdict == DENY):
        # what this basis adds to the denials before it (simplified in their context, so a proxy's
        # objection reads "keep only X" beside "drop NOPAT" rather than "keep only X or NOPAT")
        done.add(basis)
        so_far = region(expr, lambda x: x.verdict == DENY and x.basis in done)
        dropped = frozenset().union(*(o.codes for o in obligations))
        obligations += _obligations(so_far - emitted, basis, own, dropped)
        emitted = so_far | emitted
    permits = [x for x in every if x.verdict == PERMIT and region(expr, lambda y, p=x: y is p) != FALSE]  # type: ignore[misc]
    reasons = tuple(itertools.chain.from_iterable(x.reasons for x in permits))
    if own:
        reasons += ("resources authored by the requester's organisation are always kept (2c)",)
    basis = typical.basis if typical.verdict == PERMIT else permits[0].basis if permits else "rule:own-record"
    return Decision(PERMIT, basis, tuple(obligations), any(x.break_glass for x in permits), reasons)


# ---- entry points -----------------------------------------------------------------------------------

def _decide_purpose(req: Request, purpose: str | None, consents: Sequence[ParsedConsent], cfg: Config) -> Decision:
    ctx = _context(req, purpose, cfg)
    kind = req.actor.kind
    if kind == ADMIN and cfg.admin_bypass and not ctx.secondary:
        return Decision(PERMIT, "rule:admin", reasons=("administrators may read and write every record",))
    own = req.actor.org_keys if ctx.direct_care and kind in cfg.direct_care_kinds else frozenset()
    r = req.resource
    if r is not None and own & r.author_keys:
        return Decision(PERMIT, "rule:own-record", reasons=("an organisation always sees what it authored (2c)",))
    expr = _policy(ctx, consents)
    if r is not None:
        assert isinstance(expr, Leaf), "resource mode decides every condition"
        return Decision(expr.verdict, expr.basis, (), expr.break_glass, expr.reasons)
    try:
        return _plan(expr, own)
    except TooComplex as exc:
        return Decision(DENY, "rule:too-complex", reasons=(f"cannot plan this search ({exc}); decide per resource",))


def _filter_key(d: Decision) -> frozenset[tuple[Any, ...]]:
    return frozenset((o.codes, o.except_any_of_codes, o.all_of, o.unless_authored_by) for o in d.obligations)


def _with_break_glass(req: Request, purpose: str | None, consents: Sequence[ParsedConsent], cfg: Config) -> Decision:
    d = _decide_purpose(req, purpose, consents, cfg)
    if not d.permitted or d.break_glass or purpose is None or codes.code_of(codes.purpose_token(purpose)) != cfg.btg_purpose:
        return d
    ordinary = _decide_purpose(req, "TREAT", consents, cfg)  # would ordinary direct care have had it?
    if not ordinary.permitted or _filter_key(ordinary) != _filter_key(d):
        return replace(d, break_glass=True, reasons=d.reasons + ("this access depends on break-glass",))
    return d


def decide(request: Request, consents: Sequence[ParsedConsent | Mapping[str, Any]],
           config: Config = DEFAULT_CONFIG) -> Decision:
    """Decide one request: a resource (``request.resource``) or a search plan (``resource=None``).

    ``consents`` are the person's Consent resources, parsed (`parse_consent`) or as stored FHIR JSON.
    """
    parsed = [c if isinstance(c, ParsedConsent) else parse_consent(c) for c in consents]
    purposes: tuple[str | None, ...] = request.purposes or (None,)
    results = [(p, _with_break_glass(request, p, parsed, config)) for p in purposes]
    if len(results) == 1:
        return results[0][1]
    reasons = tuple(f"[{p}] {why}" for p, d in results for why in d.reasons)
    denied = [d for _, d in results if not d.permitted]
    if denied:
        return Decision(DENY, denied[0].basis, reasons=reasons)
    obligations = tuple(dict.fromkeys(o for _, d in results for o in d.obligations))
    return Decision(PERMIT, results[0][1].basis, obligations, any(d.break_glass for _, d in results), reasons)


def filter_allows(decision: Decision, resource: ResourceFacts) -> bool:
    """Apply a decision's obligations to one resource: True if it may be returned."""
    return decision.permitted and not any(o.drops(resource) for o in decision.obligations)
