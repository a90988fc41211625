"""`GET [base]/$denials-report[?start=][&end=]`: refused requests by reason, organisation and user.

The audit rows with outcome 4 recorded in the window (default the last 30 days, at most 366) are streamed
oldest first in batches of 500 (keyset over (recorded, seq)) and read as AuditEvents, never all at once. Events
of one request (the same BALP request id: e.g. its REST event and a policy-decision event) count as one
denied request; they are recorded within moments of each other, so only the requests of the last few
minutes are held while streaming.

The reason of a denied request, in order of preference:
  policy     the basis of a policy deny note the policy enforcement point attached to the event (the
             request-id entity's detail of type `policy`): "policy: deny Patient/<id> (<basis>)" gives the
             basis, e.g. `Consent/<id>`, `default:no-basis`, `rule:nopat`; "policy: deny Patient/<id>: <why>"
             gives <why> (e.g. `no care relationship`); "policy: deny <basis> ..." gives <basis>
  decision   the outcome description of a policy-decision event (deny)
  outcome    the outcome description (OperationOutcome diagnostics) of the refused interaction (401, 403,
             404, 4xx), with resource ids and long hex ids replaced by `{id}` so like refusals group together
Parameters: `start`, `end`, `total` (denied requests), `events` (AuditEvents with outcome 4), then
`reason` (reason, kind, count), `organisation` (reference, odsCode, name, count) and `user` (user, reference,
name, count) parts, most first; each list holds at most 1000 entries (`truncated` says when more).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import orjson
from sqlalchemy import and_, or_, select

from service.audit import codes as c
from service.audit.render import render
from service.audit.reports.common import (
    names,
    org_parts,
    organisations_by_ods,
    require_ig,
    window,
    window_parts,
)
from service.audit.tables import audit_log as A
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository
from service.workflows.params import Params

BATCH = 500
HORIZON_US = 10 * 60 * 1_000_000  # the events of one request are recorded within this of each other
TOP = 1000
_POLICY_DENY = re.compile(r"^\s*policy:\s*(?:search\s+)?deny\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
_TRAILING_PAREN = re.compile(r"\(([^()]+)\)\s*$")
_PATIENT_REF = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")
_REF = re.compile(r"\b([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^\s/;,]+)?")
_HEX = re.compile(r"\b[0-9a-f]{16,}\b")


def normalise(desc: str | None) -> str:
    if not desc:
        return "(no description)"
    text = _REF.sub(lambda m: f"{m.group(1)}/{{id}}", desc.strip())
    text = _HEX.sub("{id}", text)
    return text[:200]


def _detail_notes(ev: dict[str, Any]) -> list[str]:
    out = []
    for ent in ev.get("entity") or []:
        if not isinstance(ent, dict):
            continue
        for d in ent.get("detail") or []:
            if isinstance(d, dict) and d.get("type") == "policy" and isinstance(d.get("valueString"), str):
                out.append(d["valueString"])
    return out


def _request_id(ev: dict[str, Any]) -> str:
    for ent in ev.get("entity") or []:
        if isinstance(ent, dict) and (ent.get("type") or {}).get("code") == "XrequestId":
            value = ((ent.get("what") or {}).get("identifier") or {}).get("value")
            if isinstance(value, str) and value and value != "unknown":
                return value
    return "event:" + str(ev.get("id"))


def _agent(ev: dict[str, Any], code: str) -> dict[str, Any] | None:
    for a in ev.get("agent") or []:
        if isinstance(a, dict) and any(cd.get("code") == code for cd in (a.get("type") or {}).get("coding", [])):
            return a
    return None


def policy_basis(note: str) -> str | None:
    """The basis of a policy deny note, or None for any other note. Understands
    "policy: deny Patient/<id> (<basis>)", "policy: deny Patient/<id>: <why>" and "policy: deny <basis> ..."
    (also "policy: search deny ..."); patient ids never become part of the reason."""
    m = _POLICY_DENY.match(note)
    if m is None:
        return None
    rest = m.group(1).strip()
    paren = _TRAILING_PAREN.search(rest)
    if paren:
        return paren.group(1).strip()
    _head, sep, why = rest.partition(": ")
    if sep and why.strip():
        return normalise(why.strip())
    first = rest.split(" ", 1)[0].rstrip(".,;:") if rest else ""
    return first if first and not _PATIENT_REF.match(first) else "deny"


def _reason(ev: dict[str, Any]) -> tuple[int, str, str]:
    """(preference, kind, reason): lower preference wins within a request."""
    for note in _detail_notes(ev):
        basis = policy_basis(note)
        if basis:
            return 0, "policy", basis
    if (ev.get("type") or {}).get("code") == c.TYPE_POLICY["code"]:
        return 1, "decision", normalise(ev.get("outcomeDesc"))
    return 2, "outcome", normalise(ev.get("outcomeDesc"))


def _org(ev: dict[str, Any]) -> tuple[str, str]:
    who = (_agent(ev, "PROV") or {}).get("who") or {}
    ref = who.get("reference") if isinstance(who.get("reference"), str) else ""
    ident = who.get("identifier") or {}
    ods = ident.get("value", "") if ident.get("system") == c.ODS else ""
    return ref, ods


def _user(ev: dict[str, Any]) -> tuple[str, str]:
    """(user, fhirUser reference): the user's id, else the client's, else 'unauthenticated'."""
    user = _agent(ev, "IRCP")
    if user is not None:
        who = user.get("who") or {}
        ident = (who.get("identifier") or {}).get("value")
        name = user.get("altId") or ident or who.get("display") or "unknown"
        ref = who.get("reference") if isinstance(who.get("reference"), str) else ""
        return str(name), ref
    client = _agent(ev, "110153")
    ident = (((client or {}).get("who") or {}).get("identifier") or {}).get("value")
    return (f"client:{ident}", "") if ident else ("unauthenticated", "")


class _Tally:
    def __init__(self) -> None:
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.orgs: Counter[tuple[str, str]] = Counter()
        self.users: Counter[tuple[str, str]] = Counter()
        self.requests = 0
        self.events = 0
        self.pending: dict[str, tuple[int, tuple[int, str, str], tuple[str, str], tuple[str, str]]] = {}

    def add(self, low: int, ev: dict[str, Any]) -> None:
        self.events += 1
        key = _request_id(ev)
        reason, org, user = _reason(ev), _org(ev), _user(ev)
        seen = self.pending.get(key)
        if seen is not None:
            first, best, org0, user0 = seen
            self.pending[key] = (first, min(best, reason), org0 if any(org0) else org, user0)
        else:
            self.pending[key] = (low, reason, org, user)
        if len(self.pending) > 1000:
            self.flush(before=low - HORIZON_US)

    def flush(self, before: int | None = None) -> None:
        for key in [k for k, v in self.pending.items() if before is None or v[0] < before]:
            _first, (_p, kind, reason), org, user = self.pending.pop(key)
            self.requests += 1
            self.reasons[(reason, kind)] += 1
            self.orgs[org] += 1
            self.users[user] += 1


def _stream(repo: Repository, start: int, end: int, tally: _Tally) -> None:
    """The refused accesses of the window, oldest first, in batches (keyset over (recorded, seq))."""
    last: tuple[int, int] | None = None
    while True:
        q = select(A).where(A.c.outcome == 4, A.c.recorded >= start, A.c.recorded < end, A.c.kind != "partner")
        if last is not None:
            q = q.where(or_(A.c.recorded > last[0], and_(A.c.recorded == last[0], A.c.seq > last[1])))
        rows = repo._conn.execute(q.order_by(A.c.recorded, A.c.seq).limit(BATCH)).all()
        for row in rows:
            tally.add(row.recorded, render(row, repo.base))
        if len(rows) < BATCH:
            return
        last = (rows[-1].recorded, rows[-1].seq)


def _top(counter: Counter[Any]) -> tuple[list[tuple[Any, int]], bool]:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return items[:TOP], len(items) > TOP


def denials_report(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    require_ig(repo, "denials-report")
    start, end = window(Params(req))
    tally = _Tally()
    _stream(repo, start, end, tally)
    tally.flush()
    reasons, more_reasons = _top(tally.reasons)
    orgs, more_orgs = _top(tally.orgs)
    users, more_users = _top(tally.users)
    named = names(repo, [r for (r, _), _n in orgs if r] + [r for (_, r), _n in users if r])
    by_ods = organisations_by_ods(repo, [ods for (r, ods), _n in orgs if ods and not r])
    params: list[dict[str, Any]] = window_parts(start, end)
    params += [{"name": "total", "valueInteger": tally.requests}, {"name": "events", "valueInteger": tally.events}]
    for (reason, kind), n in reasons:
        params.append({"name": "reason", "part": [{"name": "reason", "valueString": reason},
                                                  {"name": "kind", "valueCode": kind},
                                                  {"name": "count", "valueInteger": n}]})
    for (ref, ods), n in orgs:
        name = named.get(ref)
        if not ref and ods in by_ods:
            ref, name = by_ods[ods]
        who = org_parts(ref or None, ods or None, name) or [{"name": "name", "valueString": "(no organisation)"}]
        params.append({"name": "organisation", "part": who + [{"name": "count", "valueInteger": n}]})
    for (user, ref), n in users:
        parts: list[dict[str, Any]] = [{"name": "user", "valueString": user}]
        if ref:
            parts.append({"name": "reference", "valueReference": {"reference": ref, **(
                {"display": named[ref]} if named.get(ref) else {})}})
        if named.get(ref):
            parts.append({"name": "name", "valueString": named[ref]})
        params.append({"name": "user", "part": parts + [{"name": "count", "valueInteger": n}]})
    if more_reasons or more_orgs or more_users:
        params.append({"name": "truncated", "valueBoolean": True})
    return FhirResponse(200, orjson.dumps({"resourceType": "Parameters", "parameter": params}))


OPERATIONS = (Operation(name="denials-report", level="system", types=(), methods=("GET",), handler=denials_report),)
