"""The access policy: scopes (the inner `ScopeGuard`), then care relationships, consents, labels and break-glass.

`PolicyGuard` is process-wide (settings, the decision point's configuration); `PolicyGuard.bind(...)` gives the
`Access` of one unit of work, which only the repository (service.repository) uses. It loads each patient's
consents, care relationship and break-glass grant once per unit of work (again only after a write of a
Consent or a relationship source on the same connection), asks the pure decision point (`consent.decide`)
and writes what it decided into the request's record (service/access/record.py), which the audit consumes.
Searches get the same policy as one SQL condition (`sqlfilter.PolicyCondition`).

Who sees what (ARCHITECTURE.md has the table):
- administrators and internal tools: everything (audited like everyone else);
- professionals and partner systems, for direct care (TREAT, ETREAT, PATRQT): the records of patients they
  have a care relationship with (relationships.py), less what the person's consents withhold and what is
  labelled restricted (`V`); always what their own organisation wrote (of a joint assessment the person's
  choices withhold, only the answers their organisation gave); referrals addressed to them;
- break-glass (BTG, roles configured): any patient, overriding direct-care objections (not NOPAT, restricted
  labels or the National Data Opt-out); opens a time-limited grant (break_glass.py);
- secondary use (HRESCH, HOPERAT; allowed clients and users only, read-only): everyone except people on the
  National Data Opt-out list or whose consents refuse it;
- patients: their own data (less NOPAT); proxies: what the patient's consents grant them;
- IG leads: the audit trail, consents, demographics and non-clinical resources, not clinical content;
- AuditEvents: IG leads and administrators; patients see theirs through `Patient/{id}/$access-log`;
  partner systems may add theirs.
A resource hidden from someone who has no relationship with the person answers exactly like one that does not
exist; someone who has a relationship but is refused by the person's choices or a label gets 403 `suppressed`
(they may know the record exists; they learn nothing of its content).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal, select, union
from sqlalchemy.engine import Connection

from consent import DEFAULT_CONFIG, Config, Decision, Request, decide
from consent.model import Obligation
from service.access.context import Principal, RequestContext, org_keys
from service.access.record import RequestRecord
from service.auth.guard import ScopeGuard
from service.auth.scopes import interaction_perm
from service.clock import now_us
from service.fhir.outcome import OperationOutcomeError, bad_request, forbidden
from service.ownership import is_patient_data
from service.policy import break_glass, consents, relationships, sqlfilter
from service.policy.authorship import key_of
from service.policy.config import CONFIDENTIALITY, KNOWN_PURPOSES, SECONDARY, PolicySettings
from service.policy.facts import Facts, actor, actor_keys, security_codes
from service.policy.sqlfilter import PolicyCondition, Redaction
from service.search.filter import SearchFilter

ADMIN = "admin"
IG_TYPES = frozenset({"AuditEvent", "Consent", "Patient", "Provenance"})
WRITES = frozenset({"create", "update", "patch", "delete"})
PROXY_AUTHORITY = frozenset({"POWATT", "HPOWATT", "DPOWATT", "SPOWATT", "GUARD"})  # v3-RoleCode
ADDRESSED = {"Task": "owner", "ServiceRequest": "performer"}
JOINT = "QuestionnaireResponse"  # answers carry their own authors: a co-author sees its own answers


@dataclass(frozen=True)
class Verdict:
    """Whether the caller may see one resource. `error` None: yes (`redact_to`: only what these organisations
    wrote); else the answer to give: `hidden` (as if it did not exist) or 403 `suppressed`."""

    error: OperationOutcomeError | None = None
    hidden: bool = False
    redact_to: frozenset[str] | None = None

    @property
    def visible(self) -> bool:
        return self.error is None


PERMIT = Verdict()
HIDDEN = Verdict(error=OperationOutcomeError(404, "not-found", "hidden"), hidden=True)


@dataclass
class PatientFacts:
    consents: list[Any]
    related: bool
    grant: str | None  # the caller's open break-glass grant for this patient
    ndoo: bool | None = None  # loaded when a secondary purpose needs it
    present: bool | None = None  # the Patient resource exists, undeleted (None: not asked)


class PolicyGuard:
    def __init__(self, scopes: ScopeGuard, base: str, settings: PolicySettings) -> None:
        self.scopes = scopes
        self.base = base
        self.settings = settings

    @property
    def config(self) -> Config:
        s = self.settings.btg_overrides_objections
        return DEFAULT_CONFIG if s == DEFAULT_CONFIG.btg_override else Config(btg_override=s)

    def bind(self, conn: Connection, ctx: RequestContext, record: RequestRecord, store: Any) -> Access:
        return Access(self, conn, ctx, record, store)

    def may_break_glass(self, p: Principal) -> bool:
        allowed = self.settings.break_glass_roles
        return p.kind == "practitioner" and bool(allowed & (p.roles | ({p.role_code} if p.role_code else set())))

    def may_use_secondary(self, p: Principal) -> bool:
        if p.kind == ADMIN:
            return True
        if p.kind == "system":
            return (p.client_id or p.subject) in self.settings.secondary_use_clients
        return "secondary-use" in p.roles

    @property
    def hidden_labels(self) -> frozenset[tuple[str, str]]:
        return frozenset((CONFIDENTIALITY, code) for code in self.settings.restricted_labels)


class Access:
    """The policy for one unit of work: decisions per type, per resource and per search, recorded."""

    def __init__(self, guard: PolicyGuard, conn: Connection, ctx: RequestContext, record: RequestRecord,
                 store: Any) -> None:
        self.g = guard
        self.scopes = guard.scopes
        self.conn = conn
        self.ctx = ctx
        self.record = record
        self.store = store
        self.now = now_us()
        self._facts: dict[str, PatientFacts] = {}
        self._gen = relationships.generation(conn)
        self._condition: PolicyCondition | None = None
        self._condition_built = False
        self._approximate = False  # a search plan left something to the per-resource check

    @property
    def principal(self) -> Principal:
        return self.scopes.principal(self.ctx)

    @property
    def unrestricted(self) -> bool:
        """Administrators and internal tools: every resource (audited like everyone else)."""
        p = self.ctx.principal
        return p is not None and p.kind == ADMIN

    def note(self, text: str) -> None:
        self.record.note(text)

    def _fresh(self) -> None:
        gen = relationships.generation(self.conn)
        if gen != self._gen:
            self._gen = gen
            self._facts.clear()
            self._condition, self._condition_built = None, False

    # -- per type ---------------------------------------------------------------------------------------
    def check_type(self, interaction: str, rtype: str | None) -> None:
        """Before any storage access: the scopes, the purpose of use, and what each kind of caller may do with
        a type at all (403)."""
        self.scopes.check_type(self.ctx, interaction, rtype)
        p = self.principal
        self._check_purpose(p, interaction)
        if p.kind == ADMIN:
            return
        if rtype == "AuditEvent":
            if p.kind == "ig" and interaction not in WRITES:
                return
            if p.kind == "system" and interaction == "create":
                return  # partner systems may send their own audit records (IHE ATNA)
            raise forbidden("The audit trail is for information-governance leads; a patient sees who looked at "
                            "their record through Patient/{id}/$access-log")
        if p.kind == "ig":
            if interaction in WRITES:
                raise forbidden("An information-governance lead reads the audit trail; it does not write records")
            if rtype is not None and is_patient_data(rtype) and rtype not in IG_TYPES:
                raise forbidden(f"An information-governance lead reads the audit trail, consents and demographics, "
                                f"not clinical records such as {rtype}")

    def may(self, interaction: str, rtype: str | None) -> bool:
        try:
            self.check_type(interaction, rtype)
        except OperationOutcomeError as err:
            if err.status == 403:
                return False
            raise
        return True

    def _check_purpose(self, p: Principal, interaction: str) -> None:
        purposes = self.ctx.purpose_of_use
        unknown = [x for x in purposes if x not in KNOWN_PURPOSES]
        if unknown:
            raise bad_request(f"X-Purpose-Of-Use {unknown[0]!r} is not supported here; use one of "
                              f"{', '.join(sorted(KNOWN_PURPOSES))} (v3-ActReason)", code="value")
        secondary = [x for x in purposes if x in SECONDARY]
        if secondary:
            if len(secondary) != len(purposes):
                raise bad_request("Do not mix research or planning purposes with direct care in one request",
                                  code="value")
            if not self.g.may_use_secondary(p):
                raise forbidden(f"Purpose of use {secondary[0]} (research or planning) is not allowed for this "
                                "client or user")
            if interaction in WRITES:
                raise forbidden("Research and planning purposes are read-only")
        if "BTG" in purposes:
            if p.kind == ADMIN:
                return
            if not self.g.may_break_glass(p):
                raise forbidden("Break-glass (X-Purpose-Of-Use: BTG) is not allowed for your role; roles allowed: "
                                + ", ".join(sorted(self.g.settings.break_glass_roles)))
            if not self.ctx.break_glass_reason:
                raise bad_request("Break-glass needs a reason: send X-Break-Glass-Reason with X-Purpose-Of-Use: BTG",
                                  code="required")
            self.record.btg_request = True

    # -- facts ------------------------------------------------------------------------------------------
    def needs_facts(self, owners: tuple[str, ...]) -> str | None:
        """The owner whose facts a decision about a resource of `owners` would load (None: none needed)."""
        p = self.ctx.principal
        if p is None or p.kind in (ADMIN, "ig") or not owners:
            return None
        self._fresh()
        return owners[0] if owners[0] not in self._facts else None

    def fact_parameters(self) -> dict[str, Any]:
        """Bind parameters of `consents.facts_statement` for this caller."""
        p = self.principal
        direct = p.kind in ("practitioner", "system")
        return {"now": self.now, "parties": sorted(actor_keys(p)) if direct else [""],
                "subject": p.subject if p.kind == "practitioner" else ""}

    def prime(self, pid: str, found: list[Any], related: bool, grant: str | None) -> None:
        """Facts loaded by the repository together with the row they decide on (one round trip)."""
        self._facts[pid] = PatientFacts(consents=found, related=related, grant=grant)

    def facts(self, pid: str) -> PatientFacts:
        self._fresh()
        found = self._facts.get(pid)
        if found is None:
            p = self.principal
            direct = p.kind in ("practitioner", "system")
            cs, related, grant, present = consents.patient_facts(
                self.conn, pid, self.g.base, parties=actor_keys(p) if direct else (),
                subject=p.subject if p.kind == "practitioner" else None, now_us=self.now)
            found = PatientFacts(consents=cs, related=related, grant=grant, present=present)
            self._facts[pid] = found
        return found

    def patient_present(self, pid: str) -> bool:
        """Whether facts loaded in this unit of work found Patient `pid` stored and undeleted (no query: False
        when nothing was loaded). A write's reference to its own patient needs no lookup of its own then."""
        f = self._facts.get(pid)
        return f is not None and f.present is True

    def _ndoo(self, pid: str, f: PatientFacts) -> bool:
        if f.ndoo is None:
            from service.policy.optout import has_opted_out

            f.ndoo = has_opted_out(self.conn, pid)
        return f.ndoo

    def _pdp(self, p: Principal, pid: str, purposes: tuple[str, ...], f: PatientFacts, facts: Any,
             action: str = "access", ndoo: bool = False) -> Decision:
        now = datetime.fromtimestamp(self.now / 1_000_000, tz=UTC)
        resource = facts.for_consents(f.consents) if isinstance(facts, Facts) else facts
        req = Request(patient=f"Patient/{pid}", actor=actor(p), now=now, purposes=purposes, action=action,
                      resource=resource, ndoo=ndoo)
        return decide(req, f.consents, self.g.config)

    # -- per resource ---------------------------------------------------------------------------------
    def visibility(self, interaction: str, rtype: str, resource: dict[str, Any], owners: tuple[str, ...]) -> Verdict:
        """May the caller see this stored resource (to read it, or to change it: a write-only scope reaches
        what it may change without reading it)?"""
        p = self.ctx.principal
        if p is None:
            return HIDDEN
        perms = ("r", "s") + ((interaction_perm(interaction) or "r",) if interaction in WRITES else ())
        if not self.scopes.reaches(self.ctx, perms, rtype, resource, owners):
            self.note(f"policy: hidden {rtype}: outside the access token's scopes")
            return HIDDEN
        return self._decide("read", rtype, resource, owners)

    def may_write(self, interaction: str, rtype: str, resource: dict[str, Any], owners: tuple[str, ...],
                  before: dict[str, Any] | None = None) -> None:
        """May the caller write this content (a new resource, or the next version after `before`)? Raises 403."""
        p = self.principal
        perm = interaction_perm(interaction) or "r"
        if not self.scopes.permits(p, perm, rtype, resource, owners):
            raise forbidden(f"The access token's scopes do not allow {interaction} on this {rtype}: it is outside "
                            f"the token's {self.scopes.limits(p, perm, rtype)}")
        if rtype == "Consent" and interaction == "delete" and p.kind != ADMIN:
            raise OperationOutcomeError(
                405, "not-supported", "A consent is never deleted: withdraw it by updating its status to "
                "'inactive' (or record a newer consent), so its history stays", headers={"Allow": "GET, PUT, PATCH"})
        v = self._decide(interaction, rtype, resource, owners, before)
        if v.error is not None:
            raise v.error if not v.hidden else forbidden(f"You may not {interaction} this {rtype}")

    def _decide(self, interaction: str, rtype: str, resource: dict[str, Any], owners: tuple[str, ...],
                before: dict[str, Any] | None = None) -> Verdict:
        p = self.principal
        if p.kind == ADMIN:
            self.record.touch(owners, rtype)
            self.note("policy: permit: administrator (rule:administrator)")
            return PERMIT
        if rtype == "AuditEvent":
            ok = p.kind == "ig" or (p.kind == "system" and interaction == "create")
            self.note("policy: permit AuditEvent: the audit trail, for IG leads (rule:audit-trail)" if p.kind == "ig"
                      else "policy: permit AuditEvent: a partner system's event (rule:audit-trail)" if ok
                      else "policy: hidden AuditEvent: the audit trail is for IG leads (rule:audit-trail)")
            return PERMIT if ok else HIDDEN
        if not owners:
            return PERMIT
        if p.kind == "ig":
            if rtype in IG_TYPES and interaction not in WRITES:
                self.record.touch(owners)
                self.note(f"policy: permit {rtype}: information governance oversight (rule:ig-oversight)")
                return PERMIT
            self.note(f"policy: hidden {rtype}: not for information governance (rule:ig-oversight)")
            return HIDDEN
        writing = interaction in WRITES
        facts = Facts(rtype, resource, org_keys(p) if writing and p.kind in ("practitioner", "system") else frozenset())
        out = PERMIT
        for pid in owners:
            self.record.touch((pid,))
            if p.kind in ("practitioner", "system"):
                v = self._direct_care(p, pid, interaction, rtype, resource, facts, before)
            elif p.kind in ("patient", "relatedPerson"):
                v = self._personal(p, pid, interaction, rtype, facts)
            else:
                v = HIDDEN
            if v.error is not None:
                return v
            if v.redact_to is not None:
                out = v
        return out

    def _direct_care(self, p: Principal, pid: str, interaction: str, rtype: str, resource: dict[str, Any],
                     facts: Facts, before: dict[str, Any] | None = None) -> Verdict:
        purposes = self.ctx.purpose_of_use
        writing = interaction in WRITES
        if any(x in SECONDARY for x in purposes):
            f = self.facts(pid)
            d = self._pdp(p, pid, purposes, f, facts, ndoo=self._ndoo(pid, f))
            self.note(f"policy: {d.verdict.lower()} Patient/{pid} for {'/'.join(purposes)} ({d.basis})")
            return PERMIT if d.permitted else HIDDEN
        mine = org_keys(p)
        if not writing and mine & facts.light.author_keys:
            if rtype == JOINT:
                return self._co_authored(p, pid, rtype, facts, mine)
            self.note(f"policy: permit Patient/{pid}: written by the caller's organisation (rule:own-record)")
            return PERMIT
        if self._addressed(p, rtype, resource) and (not writing or (
                interaction != "create" and before is not None and self._addressed(p, rtype, before))):
            # a referral addressed to the caller: they may read it, and accept or decline it (it stays addressed
            # to them); writing one addressed to yourself needs a care relationship like any other write
            self.note(f"policy: permit {rtype}/{resource.get('id')}: a referral addressed to the caller")
            return PERMIT
        f = self.facts(pid)
        btg = self.record.btg_request or f.grant is not None
        creating_person = writing and rtype == "Patient" and interaction == "create"
        if not f.related and not creating_person:
            if not btg:
                self.note(f"policy: deny Patient/{pid}: no care relationship")
                if writing:
                    return Verdict(error=forbidden(
                        f"You have no care relationship with Patient/{pid} (care team, episode of care, accepted "
                        "referral or registered GP), so you may not write to their record"))
                return HIDDEN
            d = self._pdp(p, pid, ("BTG",), f, facts)
            if d.permitted:
                self._flag(pid, f, f"no care relationship; {d.basis}")
        else:
            d = self._pdp(p, pid, purposes, f, facts)
            if not d.permitted and btg:
                d2 = self._pdp(p, pid, ("BTG",), f, facts)
                if d2.permitted:
                    d = d2
                    self._flag(pid, f, f"overrides {d2.basis}")
            elif d.break_glass:
                self._flag(pid, f, d.basis)
        if not d.permitted:
            self.note(f"policy: deny Patient/{pid} ({d.basis})")
            return self._withheld(rtype, resource, d.basis, related=f.related)
        hidden = security_codes(resource) & self.g.hidden_labels
        if hidden and not writing:  # (what the caller's organisation wrote was permitted above)
            self.note(f"policy: deny Patient/{pid}: restricted label {min(hidden)[1]}")
            return self._withheld(rtype, resource, "label:restricted", related=f.related)
        self.note(f"policy: permit Patient/{pid} ({d.basis}{', care relationship' if f.related else ''})")
        return PERMIT

    def _co_authored(self, p: Principal, pid: str, rtype: str, facts: Facts, mine: frozenset[str]) -> Verdict:
        """A joint assessment the caller's organisation contributed to: all of it when the person's choices
        allow them to see it, else only the answers their organisation gave (2c for what they wrote)."""
        f = self.facts(pid)
        others = replace(facts.for_consents(f.consents), author_keys=facts.light.author_keys - mine)
        d = self._pdp(p, pid, self.ctx.purpose_of_use, f, others)
        hidden = security_codes(facts.resource) & self.g.hidden_labels
        if d.permitted and (f.related or f.grant is not None) and not hidden:
            self.note(f"policy: permit Patient/{pid} ({d.basis}, co-authored)")
            return PERMIT
        self.note(f"policy: permit Patient/{pid}: only the answers written by the caller's organisation "
                  f"(rule:own-record; {d.basis if not d.permitted else 'label or relationship'})")
        return Verdict(redact_to=mine)

    def _personal(self, p: Principal, pid: str, interaction: str, rtype: str, facts: Facts) -> Verdict:
        writing = interaction in WRITES
        f = self.facts(pid)
        if p.kind == "relatedPerson" and writing and rtype == "Consent" and self._proxy_authority(p):
            self.note(f"policy: permit Patient/{pid}: a proxy with legal authority records a consent")
            return PERMIT
        action = "correct" if writing and p.kind == "relatedPerson" else "access"
        d = self._pdp(p, pid, self.ctx.purpose_of_use, f, facts, action=action)
        self.note(f"policy: {d.verdict.lower()} Patient/{pid} ({d.basis})")
        if d.permitted:
            return PERMIT
        if writing:
            return Verdict(error=forbidden(f"You may not write this {rtype} to Patient/{pid}'s record ({d.basis})"))
        return HIDDEN

    def _withheld(self, rtype: str, resource: dict[str, Any], basis: str, *, related: bool) -> Verdict:
        if not related:
            return HIDDEN
        extra = " A professional allowed to break glass may ask for it in an emergency (X-Purpose-Of-Use: BTG " \
                "with X-Break-Glass-Reason)." if not basis.startswith(("rule:nopat", "label:")) else ""
        return Verdict(error=OperationOutcomeError(
            403, "suppressed", f"{rtype}/{resource.get('id') or '?'} is withheld from you by the person's sharing "
            f"choices or its confidentiality ({basis}).{extra}"))

    def _flag(self, pid: str, f: PatientFacts, why: str) -> None:
        self.record.flagged.add(pid)
        if f.grant is not None:
            self.record.grants[pid] = f.grant
        self.note(f"policy: break-glass access to Patient/{pid} ({why})")

    def _addressed(self, p: Principal, rtype: str, resource: dict[str, Any]) -> bool:
        field_name = ADDRESSED.get(rtype)
        if field_name is None:
            return False
        refs = resource.get(field_name)
        keys = actor_keys(p)
        return any(key_of(r) & keys for r in (refs if isinstance(refs, list) else [refs]))

    def _proxy_authority(self, p: Principal) -> bool:
        if not p.fhir_user or not p.fhir_user.startswith("RelatedPerson/"):
            return False
        stored = self.store.current(self.conn, "RelatedPerson", p.fhir_user.split("/", 1)[1])
        if stored is None or stored.deleted or stored.content is None:
            return False
        rp = stored.json()
        codes = {c.get("code") for cc in rp.get("relationship") or [] for c in (cc.get("coding") or [])
                 if isinstance(c, dict)}
        return rp.get("active") is not False and bool(codes & PROXY_AUTHORITY)

    # -- searches -----------------------------------------------------------------------------------
    def search_filter(self, rtype: str) -> SearchFilter | None:
        """The policy and the scopes as SQL for rows of `rtype` (None: every row)."""
        scope = self.scopes.search_filter(self.ctx, rtype)
        p = self.principal
        if p.kind == ADMIN:
            self.note("policy: permit: administrator (rule:administrator)")
            return scope
        if rtype == "AuditEvent":
            return scope if p.kind == "ig" else SearchFilter.deny()
        if not is_patient_data(rtype):
            return scope
        if p.kind == "ig":
            if rtype in IG_TYPES:
                self.note(f"policy: permit {rtype}: information governance oversight (rule:ig-oversight)")
                return scope
            return SearchFilter.deny()
        cond = self.condition()
        if cond is None:
            return SearchFilter.deny()
        return SearchFilter.both(scope, SearchFilter(where=cond))

    def exact_for(self, rtype: str) -> bool:
        """Whether the SQL condition decided rows of `rtype` exactly as the per-resource decision would."""
        cond = self._condition
        p = self.ctx.principal
        return (cond is not None and cond.exact and is_patient_data(rtype) and rtype != "AuditEvent"
                and p is not None and p.kind != "ig")

    def search_notes(self, patients: set[str] | None) -> list[str]:
        """`suppressed` notes for a search: the people (in the results or named in the query; None: anyone)
        some of whose records the caller may not see because of their consents."""
        return [f"Some records of Patient/{pid} are not shown because of the person's sharing choices ({basis})"
                for pid, basis in sorted(self.record.suppressed.items()) if patients is None or pid in patients]

    def condition(self) -> PolicyCondition | None:
        """The SQL condition for patient data (the same object for every type), or None to deny it all."""
        self._fresh()
        if not self._condition_built:
            self._condition = self._build_condition()
            self._condition_built = True
        return self._condition

    def _build_condition(self) -> PolicyCondition | None:
        self._approximate = False
        p = self.principal
        purposes = self.ctx.purpose_of_use
        rec = self.record
        if p.kind in ("patient", "relatedPerson"):
            pid = p.patient
            if not pid:
                return None
            f = self.facts(pid)
            d = self._pdp(p, pid, purposes, f, None)
            self.note(f"policy: search {d.verdict.lower()} Patient/{pid} ({d.basis})")
            if not d.permitted:
                return None
            reds = (Redaction(frozenset({pid}), tuple(d.obligations)),) if d.obligations else ()
            return PolicyCondition(patients=[pid], redactions=reds, exact=sqlfilter.exact(d.obligations),
                                   key=("patient", pid))
        if p.kind not in ("practitioner", "system"):
            return None
        if any(x in SECONDARY for x in purposes):
            from service.policy.optout import opted_out_patients

            found = consents.with_shapes(self.conn, None, self.g.base)
            reds = self._redactions(p, found, purposes, frozenset(), set())
            self.note(f"policy: search for {'/'.join(purposes)}: National Data Opt-out excluded; consents of "
                      f"{len(found)} people applied")
            return PolicyCondition(patients=None, exclude=opted_out_patients(), redactions=reds,
                                   exact=self._exact(reds), hidden_labels=self.g.hidden_labels, key=("secondary",))
        keys = actor_keys(p)
        own = org_keys(p)
        dialect = self.conn.dialect.name
        found: dict[str, list[Any]] | None = None
        if dialect == "postgresql" and not rec.btg_request:  # grants and consents in one round trip
            granted, found = consents.search_facts(self.conn, keys, p.subject if p.kind == "practitioner" else "",
                                                   self.now, self.g.base)
        else:
            granted = break_glass.active_patients(self.conn, p.subject, self.now) \
                if p.kind == "practitioner" else set()
        related = relationships.related_patients(keys, dialect=dialect)  # (current when the search runs)
        if rec.btg_request:
            patients: Any = None
            scope_sql = None
            rec.candidates.add("*")
        else:
            scope_sql = related if not granted else union(related, *[select(literal(g)) for g in sorted(granted)])
            patients = scope_sql
            rec.candidates |= granted
        if found is None:
            found = consents.with_shapes(self.conn, scope_sql, self.g.base)
        btg_for = set(found) if rec.btg_request else (set(found) & granted)
        reds = self._redactions(p, found, purposes, own, btg_for)
        self.note("policy: search limited to patients in a care relationship with the caller"
                  + (f" and {len(granted)} break-glass grant(s)" if granted else "")
                  + (" (break-glass: any patient)" if rec.btg_request else "")
                  + f"; consents of {len(found)} people applied")
        return PolicyCondition(patients=patients, redactions=reds, own=own, addressed_to=keys, exact=self._exact(reds),
                               hidden_labels=self.g.hidden_labels,
                               key=("any",) if rec.btg_request else ("related", keys, frozenset(granted)))

    def _exact(self, reds: tuple[Redaction, ...]) -> bool:
        return not self._approximate and all(sqlfilter.exact(r.obligations) for r in reds)

    def _redactions(self, p: Principal, found: dict[str, list[Any]], purposes: tuple[str, ...],
                    own: frozenset[str], btg_for: set[str]) -> tuple[Redaction, ...]:
        """Each consented person's request-mode decision as SQL redactions; people whose consents have the
        same shape share one decision and one redaction (so the SQL grows with the kinds of consent, not
        with the number of people)."""
        rec = self.record
        groups: dict[tuple[bool, tuple[Obligation, ...], frozenset[str]], set[str]] = {}
        secondary = any(x in SECONDARY for x in purposes)
        memo: dict[tuple[Any, ...], Decision] = {}
        for pid, pairs in sorted(found.items()):
            cs = [c for c, _ in pairs]
            use = ("BTG",) if pid in btg_for else purposes
            key = (use, tuple(sorted(shapes[0] if len(pairs) == 1 else shapes[1] for _, shapes in pairs)))
            d = memo.get(key)
            if d is None:
                d = memo[key] = self._pdp(p, pid, use, PatientFacts(consents=cs, related=True, grant=None), None)
            if pid in btg_for and d.break_glass:
                rec.dependent.add(pid)
            if d.basis == "rule:too-complex":
                self._approximate = True
                continue  # decided per resource after paging
            theirs = ", ".join(sorted(f"Consent/{c.id}" for c in cs))  # (a shared decision names another's)
            if not d.permitted:
                groups.setdefault((True, (), own), set()).add(pid)
                rec.suppressed[pid] = theirs if d.basis.startswith("Consent/") else d.basis
            elif d.obligations:
                plain = tuple(dict.fromkeys(replace(o, basis="") for o in d.obligations))
                groups.setdefault((False, plain, frozenset()), set()).add(pid)
                rec.suppressed[pid] = theirs
        if secondary:
            rec.suppressed.clear()
        return tuple(Redaction(frozenset(pids), obligations, drop_all=drop_all, unless=unless)
                     for (drop_all, obligations, unless), pids in groups.items())
