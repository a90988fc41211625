"""`GET [base]/$objections-report`: the objections and consents in force now, by kind and organisation.

In force: Consent status `active` and the root provision's period (if any) covering now (Europe/London
reading of partial dates, as the policy decision point does). Active Consents are streamed in batches of
500 (keyset over the id, prefiltered in SQL on the `status` index), never loaded all at once.

A Consent may count under several kinds (a root deny naming an organisation that also excludes mental
health data is both an organisation and a data-class objection). Kinds, from its provisions (any depth):
  opt-out-all             root deny with no actor, no data class/label/code and no secondary purpose:
                          objection to all sharing (nested permits are its exceptions)
  opt-out-organisations   a deny naming organisations (by reference or ODS code)
  opt-out-other-actors    a deny naming other parties (practitioners, roles, care teams, ...)
  opt-out-data-classes    a deny limited to classes of data, security labels or codes (e.g. mental or
                          sexual health)
  opt-in                  a root permit with no objection inside it (explicit consent to share); a root
                          permit with nested denies counts as the objections those denies are
  proxy-grant             a permit naming a RelatedPerson (what a carer or proxy may see)
  research-opt-out        research scope or research/planning purposes (HRESCH, HOPERAT, ...) with deny:
                          secondary-use objections recorded as Consents (the National Data Opt-out)
  research-opt-in         the same with permit (explicit consent to research)
Parameters: `asOf`, `consentsInForce`, `patients` (distinct patients with one), `kind` (code, display,
count; every kind, zeros included), `scope` and `policyRule` (valueCoding, count), `dataClass` (valueCoding,
count: consents with a deny on it), `organisation` (reference, odsCode, name, consents: consents with a deny
naming it), `notEvaluable` (active consents whose period cannot be read), and
`nationalDataOptOutList` (NHS numbers on the imported National Data Opt-out list, table `data_opt_out`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import exists, func, select

from consent import codes as cc
from consent import time as ftime
from service.audit.reports.common import org_parts, organisations, organisations_by_ods, require_ig
from service.clock import fhir_instant, from_datetime
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.policy.tables import data_opt_out
from service.repository import Repository
from service.search.tables import sp_token
from service.storage.tables import resource as R
from service.workflows.params import Params

BATCH = 500
KINDS = {
    "opt-out-all": "Objection to all sharing",
    "opt-out-organisations": "Objection to sharing with named organisations",
    "opt-out-other-actors": "Objection to sharing with named people, roles or teams",
    "opt-out-data-classes": "Objection to sharing classes of data (security labels, classes, codes)",
    "opt-in": "Explicit consent to share (opt-in)",
    "proxy-grant": "Access granted to a carer or proxy",
    "research-opt-out": "Secondary-use objection (research and planning; National Data Opt-out)",
    "research-opt-in": "Consent to research use",
}
SECONDARY = frozenset(cc.token(cc.ACT_REASON, p) for p in (
    "HRESCH", "HOPERAT", "BIORCH", "CLINTRCH", "CLINTRCHNPC", "CLINTRCHPC", "PRECLINTRCH", "DSRCH", "POARCH",
    "TRANSRCH", "HMARKT", "POPHLTH", "PUBHLTH"))
LABELS = {  # display for the sensitivity labels people most often object to sharing
    "PSY": "psychiatry information", "MH": "mental health information", "BH": "behavioural health information",
    "SEX": "sexuality and reproductive health information", "STD": "sexually transmitted disease information",
    "HIV": "HIV/AIDS information", "ETH": "substance abuse information", "SUD": "substance use disorder information",
    "R": "restricted", "V": "very restricted",
}
Coding = tuple[str, str, str]  # (system, code, display)


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else ([] if v is None else [v])


def _codings(concepts: Any, *, concept: bool) -> list[Coding]:
    out = []
    for x in _list(concepts):
        for cd in (_list(x.get("coding")) if concept and isinstance(x, dict) else [x]):
            if isinstance(cd, dict) and cd.get("code"):
                system = cc.normalise_system(str(cd.get("system") or ""))
                code = str(cd["code"])
                out.append((system, code, str(cd.get("display") or LABELS.get(code, ""))))
    return out


class _Consent:
    """What the report needs from one Consent's provisions."""

    def __init__(self, res: dict[str, Any]) -> None:
        self.kinds: set[str] = set()
        self.orgs: set[tuple[str, str]] = set()  # (reference, ODS code)
        self.labels: set[Coding] = set()
        self.scopes = _codings(res.get("scope"), concept=True)
        self.rules = _codings(res.get("policyRule"), concept=True)
        self.research = any(cc.token(s, c) == cc.RESEARCH for s, c, _ in self.scopes)
        self.root_permit = False
        root = res.get("provision")
        if isinstance(root, dict):
            self._walk(root, is_root=True, secondary=False)
        if self.root_permit and not any(k.startswith("opt-out") for k in self.kinds):
            self.kinds.add("opt-in")

    def _walk(self, node: dict[str, Any], *, is_root: bool, secondary: bool) -> None:
        purposes = {cc.token(s, c) for s, c, _ in _codings(node.get("purpose"), concept=False)}
        secondary = secondary or self.research or (bool(purposes) and purposes <= SECONDARY)
        kind = node.get("type")
        orgs, others, proxies = set(), 0, 0
        for actor in _list(node.get("actor")):
            ref = (actor or {}).get("reference") if isinstance(actor, dict) else None
            ref = ref if isinstance(ref, dict) else {}
            literal = ref.get("reference") if isinstance(ref.get("reference"), str) else ""
            ident = ref.get("identifier") if isinstance(ref.get("identifier"), dict) else {}
            literal = cc.normalise_reference(literal) if literal else ""
            if literal.startswith("Organization/") or ident.get("system") == cc.ODS_CODE:
                orgs.add((literal, str(ident.get("value") or "") if ident.get("system") == cc.ODS_CODE else ""))
            elif literal.startswith("RelatedPerson/"):
                proxies += 1
            elif literal or ident:
                others += 1
        data = (_codings(node.get("securityLabel"), concept=False) + _codings(node.get("class"), concept=False)
                + _codings(node.get("code"), concept=True))
        if kind == "deny":
            if secondary:
                self.kinds.add("research-opt-out")
            else:
                if orgs:
                    self.kinds.add("opt-out-organisations")
                    self.orgs |= orgs
                if others or proxies:
                    self.kinds.add("opt-out-other-actors")
                if data:
                    self.kinds.add("opt-out-data-classes")
                    self.labels |= set(data)
                if is_root and not (orgs or others or proxies or data):
                    self.kinds.add("opt-out-all")
        elif kind == "permit":
            if proxies:
                self.kinds.add("proxy-grant")
            if secondary:
                self.kinds.add("research-opt-in")
            elif is_root and not proxies:
                self.root_permit = True
        for child in _list(node.get("provision")):
            if isinstance(child, dict):
                self._walk(child, is_root=False, secondary=secondary)


def in_force(res: dict[str, Any], now: datetime) -> bool:
    """Status active and the root provision's period covering `now` (raises FhirTimeError if unreadable)."""
    if res.get("status") != "active":
        return False
    period = (res.get("provision") or {}).get("period") if isinstance(res.get("provision"), dict) else None
    if not isinstance(period, dict):
        return True
    return ftime.period(period.get("start"), period.get("end")).contains(now)


class _Tally:
    def __init__(self) -> None:
        self.consents = 0
        self.not_evaluable = 0
        self.patients: set[str] = set()
        self.kinds: Counter[str] = Counter()
        self.scopes: Counter[tuple[str, str]] = Counter()
        self.rules: Counter[tuple[str, str]] = Counter()
        self.labels: Counter[tuple[str, str]] = Counter()
        self.displays: dict[tuple[str, str], str] = {}
        self.orgs: Counter[tuple[str, str]] = Counter()

    def add(self, res: dict[str, Any], now: datetime) -> None:
        try:
            if not in_force(res, now):
                return
        except (ftime.FhirTimeError, ValueError, TypeError):
            self.not_evaluable += 1
            return
        found = _Consent(res)
        self.consents += 1
        patient = (res.get("patient") or {}).get("reference") if isinstance(res.get("patient"), dict) else None
        if isinstance(patient, str):
            self.patients.add(cc.normalise_reference(patient))
        self.kinds.update(found.kinds)
        self.scopes.update({(s, c) for s, c, _ in found.scopes})
        self.rules.update({(s, c) for s, c, _ in found.rules})
        self.labels.update({(s, c) for s, c, _ in found.labels})
        for s, c, d in found.labels:
            if d and not self.displays.get((s, c)):
                self.displays[(s, c)] = d
        self.orgs.update(found.orgs)


def _stream(repo: Repository, tally: _Tally, now: datetime) -> None:
    active = exists().where(sp_token.c.res_type == "Consent", sp_token.c.res_id == R.c.res_id,
                            sp_token.c.param == "status", sp_token.c.code == "active")
    last = None
    while True:
        q = select(R.c.res_id, R.c.content).where(R.c.res_type == "Consent", R.c.deleted.is_(False),
                                                   active)
        if last is not None:
            q = q.where(R.c.res_id > last)
        rows = repo._conn.execute(q.order_by(R.c.res_id).limit(BATCH)).all()
        for _rid, content in rows:
            if content:
                tally.add(orjson.loads(content), now)
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


def _coding_parts(counter: Counter[tuple[str, str]], label: str,
                  displays: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    out = []
    for (system, code), n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
        display = (displays or {}).get((system, code))
        coding = {**({"system": system} if system else {}), "code": code, **({"display": display} if display else {})}
        out.append({"name": label, "part": [{"name": "code", "valueCoding": coding},
                                            {"name": "count", "valueInteger": n}]})
    return out


def _merged_orgs(repo: Repository, orgs: Counter[tuple[str, str]]) -> list[tuple[tuple[str, str, str | None], int]]:
    """Organisations named by reference or by ODS code, resolved and merged: ((reference, ODS, name), n)."""
    info = organisations(repo, [ref for ref, _ in orgs if ref])
    by_ods = organisations_by_ods(repo, [ods for ref, ods in orgs if ods and not ref])
    merged: Counter[tuple[str, str]] = Counter()
    names_of: dict[tuple[str, str], str | None] = {}
    for (ref, ods), n in orgs.items():
        name = None
        if ref and ref in info:
            name, ods = info[ref][0], ods or info[ref][1] or ""
        elif not ref and ods in by_ods:
            ref, name = by_ods[ods]
        key = (ref, ods)
        merged[key] += n
        names_of[key] = names_of.get(key) or name
    return [((ref, ods, names_of[(ref, ods)]), n)
            for (ref, ods), n in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))]


def objections_report(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    require_ig(repo, "objections-report")
    Params(req)  # no parameters; rejects a malformed body
    now = datetime.now(UTC)
    tally = _Tally()
    _stream(repo, tally, now)
    ndoo = repo._conn.execute(select(func.count()).select_from(data_opt_out)).scalar_one()
    params: list[dict[str, Any]] = [
        {"name": "asOf", "valueInstant": fhir_instant(from_datetime(now))},
        {"name": "consentsInForce", "valueInteger": tally.consents},
        {"name": "patients", "valueInteger": len(tally.patients)},
    ]
    for code, display in KINDS.items():
        params.append({"name": "kind", "part": [{"name": "code", "valueCode": code},
                                                {"name": "display", "valueString": display},
                                                {"name": "count", "valueInteger": tally.kinds[code]}]})
    params += _coding_parts(tally.scopes, "scope") + _coding_parts(tally.rules, "policyRule")
    params += _coding_parts(tally.labels, "dataClass", tally.displays)
    for (ref, ods, name), n in _merged_orgs(repo, tally.orgs):
        params.append({"name": "organisation",
                       "part": org_parts(ref or None, ods or None, name) + [{"name": "consents", "valueInteger": n}]})
    params.append({"name": "notEvaluable", "valueInteger": tally.not_evaluable})
    params.append({"name": "nationalDataOptOutList", "valueInteger": ndoo})
    return FhirResponse(200, orjson.dumps({"resourceType": "Parameters", "parameter": params}))


OPERATIONS = (Operation(name="objections-report", level="system", types=(), methods=("GET",), handler=objections_report),)
