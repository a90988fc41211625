"""The policy guard: scopes (the inner `ScopeGuard`), then care relationships, consents, labels and
break-glass, for every interaction (the Guard protocol of service/access/guard.py).

`PolicyGuard.bind(session)` gives the per-unit-of-work guard that `Session.guard` returns: it loads each
patient's consents, care relationship and break-glass grant once per unit of work (again only after a
write of a Consent or a relationship source on the same connection) and asks the pure decision point
(`consent.decide`). Searches get the same policy as one SQL condition (`sqlfilter.PolicyCondition`).

Who sees what (ARCHITECTURE.md has the table):
- administrators and internal tools: everything (audited like everyone else);
- professionals and partner systems, for direct care (TREAT, ETREAT, PATRQT): the records of patients they
  have a care relationship with (relationships.py), less what the person's consents withhold and what is
  labelled restricted (`V`); always what their own organisation wrote; referrals addressed to them;
- break-glass (BTG, roles configured): any patient, overriding direct-care objections (not NOPAT,
  restricted labels or the National Data Opt-out); opens a time-limited grant (break_glass.py);
- secondary use (HRESCH, HOPERAT; allowed clients and users only, read-only): everyone except people on the
  National Data Opt-out list or whose consents refuse it;
- patients: their own compartment (less NOPAT); proxies: what the patient's consents grant them;
- IG leads: the audit trail, consents, demographics and non-clinical resources, not clinical content;
- AuditEvents: IG leads and administrators; patients see theirs through `Patient/{id}/$access-log`;
  partner systems may add theirs.
A resource hidden from someone who has no relationship with the person answers 404 exactly like one that
does not exist; someone who has a relationship but is refused by the person's choices or a label gets 403
`suppressed` (they may know the record exists; they learn nothing of its content).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal, select, union

from consent import DEFAULT_CONFIG, Config, Decision, Request, decide
from consent.model import Obligation
from service.access.context import Principal, RequestContext
from service.auth.compartment import is_patient_data, patients_of
from service.auth.guard import ScopeGuard
from service.auth.scopes import interaction_perm
from service.fhir.outcome import OperationOutcomeError, bad_request, forbidden, not_found
from service.policy import break_glass, consents, relationships, sqlfilter
from service.policy.authorship import org_keys
from service.policy.config import CONFIDENTIALITY, KNOWN_PURPOSES, SECONDARY, PolicySettings
from service.policy.facts import Facts, actor, actor_keys, security_codes
from service.policy.sqlfilter import PolicyCondition, Redaction
from service.search.filter import SearchFilter
from service.storage.clock import now_us

ADMIN = "admin"
IG_TYPES = frozenset({"AuditEvent", "Consent", "Patient", "Provenance"})
WRITES = frozenset({"create", "update", "patch", "delete"})
PROXY_AUTHORITY = frozenset({"POWATT", "HPOWATT", "DPOWATT", "SPOWATT", "GUARD"})  # v3-RoleCode
MAX_NOTES = 20


def _error_404(rtype: str, resource: dict[str, Any]) -> OperationOutcomeError:
    return not_found(f"{rtype}/{resource.get('id') or '?'} is not known")


@dataclass
class PolicyState:
    """What one request's policy decisions left for its audit step (kept on the RequestContext)."""

    btg_request: bool = False
    touched: set[str] = field(default_factory=set)  # patients whose data was decided on
    flagged: set[str] = field(default_factory=set)  # accesses that depended on break-glass
    candidates: set[str] = field(default_factory=set)  # searches: granted/BTG patients to check afterwards
    dependent: set[str] = field(default_factory=set)  # related, but a consent was overridden by BTG
    grants: dict[str, str] = field(default_factory=dict)  # patient -> open grant id
    notes: dict[str, None] = field(default_factory=dict)
    suppressed: dict[str, str] = field(default_factory=dict)  # patient -> basis, for search outcomes


def state(ctx: RequestContext) -> PolicyState:
    st = ctx.__dict__.get("policy_state")
    if st is None:
        st = ctx.__dict__["policy_state"] = PolicyState()
    return st


def note(ctx: RequestContext, text: str) -> None:
    """Record a policy decision on the request's AuditEvent (deduplicated, at most MAX_NOTES)."""
    from service.audit import note as audit_note

    notes = state(ctx).notes
    if text not in notes and len(notes) < MAX_NOTES:
        notes[text] = None
        audit_note(ctx, text)


@dataclass
class PatientFacts:
    consents: list[Any]
    related: bool
    grant: str | None  # the caller's open break-glass grant for this patient
    ndoo: bool | None = None  # loaded when a secondary purpose needs it


class PolicyGuard:
    def __init__(self, inner: ScopeGuard, services: Any, settings: PolicySettings) -> None:
        self.inner = inner
        self.services = services
        self.settings = settings
        self.config = Config(btg_override=settings.btg_overrides_objections) \
            if settings.btg_overrides_objections != DEFAULT_CONFIG.btg_override else DEFAULT_CONFIG

    def bind(self, session: Any) -> BoundPolicy:
        return BoundPolicy(self, session)

    # Unbound use (no unit of work at hand) cannot consult consents or relationships: it fails closed.
    # Every handler goes through `Session.guard`, which is bound.
    def check_type(self, ctx: RequestContext, interaction: str, rtype: str | None) -> None:
        self.inner.check_type(ctx, interaction, rtype)

    def check_resource(self, ctx: RequestContext, interaction: str, rtype: str, resource: dict[str, Any]) -> None:
        raise forbidden("The access policy needs a unit of work (use Session.guard)")

    def can_see(self, ctx: RequestContext, rtype: str, resource: dict[str, Any]) -> bool:
        return False

    def search_filter(self, ctx: RequestContext, rtype: str) -> Any:
        return SearchFilter.deny()

    # -- who may state which purpose ------------------------------------------------------------------
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


class BoundPolicy:
    """The policy guard for one unit of work (one `Session`)."""

    def __init__(self, guard: PolicyGuard, session: Any) -> None:
        self.g = guard
        self.inner = guard.inner
        self.session = session
        self.base = session.base
        self.now = now_us()
        self._facts: dict[str, PatientFacts] = {}
        self._gen = relationships.generation(session.conn)
        self._condition: tuple[Any, PolicyCondition | None] | None = None
        self._approximate = False  # a search plan left something to the per-resource check

    @property
    def conn(self) -> Any:
        return self.session.conn

    def _fresh(self) -> None:
        gen = relationships.generation(self.conn)
        if gen != self._gen:
            self._gen = gen
            self._facts.clear()
            self._condition = None

    # -- Guard protocol ---------------------------------------------------------------------------------
    def check_type(self, ctx: RequestContext, interaction: str, rtype: str | None) -> None:
        self.inner.check_type(ctx, interaction, rtype)
        p = self.inner._principal(ctx)
        self._check_purpose(ctx, p, interaction)
        if p.kind == ADMIN:
            return
        if rtype == "AuditEvent":
            if p.kind == "ig" and interaction not in WRITES:
                return
            if p.kind == "system" and interaction == "create":
                return  # partner systems may send their own audit records (IHE ATNA)
            if p.kind == "patient" and interaction == "read":
                return  # Patient/{id}/$access-log; direct reads are filtered per resource
            raise forbidden("The audit trail is for information-governance leads; a patient sees who looked at "
                            "their record through Patient/{id}/$access-log")
        if p.kind == "ig":
            if interaction in WRITES:
                raise forbidden("An information-governance lead reads the audit trail; it does not write records")
            if rtype is not None and is_patient_data(rtype) and rtype not in IG_TYPES:
                raise forbidden(f"An information-governance lead reads the audit trail, consents and demographics, "
                                f"not clinical records such as {rtype}")

    def check_resource(self, ctx: RequestContext, interaction: str, rtype: str, resource: dict[str, Any]) -> None:
        self.inner.check_resource(ctx, interaction, rtype, resource)
        p = self.inner._principal(ctx)
        if rtype == "Consent" and interaction == "delete" and p.kind != ADMIN:
            raise OperationOutcomeError(
                405, "not-supported", "A consent is never deleted: withdraw it by updating its status to "
                "'inactive' (or record a newer consent), so its history stays", headers={"Allow": "GET, PUT, PATCH"})
        err = self.decide(ctx, interaction, rtype, resource)
        if err is not None:
            raise err

    def can_see(self, ctx: RequestContext, rtype: str, resource: dict[str, Any]) -> bool:
        if not self.inner.can_see(ctx, rtype, resource):
            return False
        return self.decide(ctx, "read", rtype, resource) is None

    def can_see_filtered(self, ctx: RequestContext, rtype: str, resource: dict[str, Any]) -> bool:
        """`can_see` for a row the search's SQL condition already let through: the decision point is asked
        again only where that condition was approximate."""
        if not self.inner.can_see(ctx, rtype, resource):
            return False
        built = self._condition
        if built is not None and built[1] is not None and built[1].exact and is_patient_data(rtype) \
                and rtype != "AuditEvent" and ctx.principal is not None and ctx.principal.kind != "ig":
            return True
        return self.decide(ctx, "read", rtype, resource) is None

    def read_error(self, ctx: RequestContext, interaction: str, rtype: str,
                   resource: dict[str, Any]) -> OperationOutcomeError | None:
        """Why the caller may not see this resource (None if they may): 404 as if it did not exist, or 403
        `suppressed` for someone with a care relationship whom the person's choices or a label refuse."""
        if not self._scope_reaches(ctx, interaction, rtype, resource):
            return _error_404(rtype, resource)
        return self.decide(ctx, "read", rtype, resource)

    def _scope_reaches(self, ctx: RequestContext, interaction: str, rtype: str, resource: dict[str, Any]) -> bool:
        """The token reaches this resource: to read it, or (for an update, patch or delete) to change it, so a
        write-only scope (v1 `.write`, v2 `.u`/`.d`) can change what it cannot read."""
        if self.inner.can_see(ctx, rtype, resource):
            return True
        perm = interaction_perm(interaction) if interaction in WRITES else None
        return perm is not None and ctx.principal is not None and self.inner.permits(ctx.principal, perm, rtype, resource)

    def search_filter(self, ctx: RequestContext, rtype: str) -> SearchFilter | None:
        scope = self.inner.search_filter(ctx, rtype)
        p = self.inner._principal(ctx)
        if p.kind == ADMIN:
            return scope
        if rtype == "AuditEvent":
            return scope if p.kind == "ig" else SearchFilter.deny()
        if not is_patient_data(rtype):
            return scope
        if p.kind == "ig":
            return scope if rtype in IG_TYPES else SearchFilter.deny()
        cond = self.condition(ctx)
        if cond is None:
            return SearchFilter.deny()
        return SearchFilter.both(scope, SearchFilter(where=cond))

    def search_notes(self, ctx: RequestContext, patients: set[str] | None) -> list[str]:
        """`suppressed` notes for a search: the people (in the results or named in the query; None: anyone)
        some of whose records the caller may not see because of their consents."""
        st = state(ctx)
        return [f"Some records of Patient/{pid} are not shown because of the person's sharing choices ({basis})"
                for pid, basis in sorted(st.suppressed.items()) if patients is None or pid in patients]

    # -- purposes ---------------------------------------------------------------------------------------
    def _check_purpose(self, ctx: RequestContext, p: Principal, interaction: str) -> None:
        purposes = ctx.purpose_of_use
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
            if not ctx.break_glass_reason:
                raise bad_request("Break-glass needs a reason: send X-Break-Glass-Reason with X-Purpose-Of-Use: BTG",
                                  code="required")
            state(ctx).btg_request = True

    # -- facts ------------------------------------------------------------------------------------------
    def facts(self, p: Principal, pid: str) -> PatientFacts:
        self._fresh()
        found = self._facts.get(pid)
        if found is None:
            direct = p.kind in ("practitioner", "system")
            cs, related, grant = consents.patient_facts(
                self.conn, pid, self.base, parties=actor_keys(p) if direct else (),
                subject=p.subject if p.kind == "practitioner" else None, now_us=self.now)
            found = PatientFacts(consents=cs, related=related, grant=grant)
            self._facts[pid] = found
        return found

    def _ndoo(self, pid: str, f: PatientFacts) -> bool:
        if f.ndoo is None:
            from service.policy.optout import has_opted_out

            f.ndoo = has_opted_out(self.conn, pid)
        return f.ndoo

    def _pdp(self, p: Principal, pid: str, purposes: tuple[str, ...], f: PatientFacts,
             facts: Facts | None, action: str = "access", ndoo: bool = False) -> Decision:
        now = datetime.fromtimestamp(self.now / 1_000_000, tz=UTC)
        req = Request(patient=f"Patient/{pid}", actor=actor(p), now=now, purposes=purposes, action=action,
                      resource=facts.for_consents(f.consents) if facts is not None else None, ndoo=ndoo)
        return decide(req, f.consents, self.g.config)

    # -- per resource ---------------------------------------------------------------------------------
    def decide(self, ctx: RequestContext, interaction: str, rtype: str,
               resource: dict[str, Any]) -> OperationOutcomeError | None:
        """None to permit, else the error to answer with."""
        p = ctx.principal
        if p is None:
            return _error_404(rtype, resource)
        if p.kind == ADMIN:
            return None
        if rtype == "AuditEvent":
            ok = p.kind == "ig" or (p.kind == "system" and interaction == "create")
            return None if ok else _error_404(rtype, resource)
        if not is_patient_data(rtype):
            return None
        if p.kind == "ig":
            return None if rtype in IG_TYPES and interaction not in WRITES else _error_404(rtype, resource)
        pids = patients_of(rtype, resource)
        if not pids:
            return None
        writing = interaction in WRITES
        # the version being written is written by the caller
        facts = Facts(rtype, resource, org_keys(p) if writing and p.kind in ("practitioner", "system") else frozenset())
        st = state(ctx)
        for pid in sorted(pids):
            st.touched.add(pid)
            if p.kind in ("practitioner", "system"):
                err = self._direct_care(ctx, p, pid, interaction, rtype, resource, facts)
            elif p.kind in ("patient", "relatedPerson"):
                err = self._personal(ctx, p, pid, interaction, rtype, resource, facts)
            else:
                err = _error_404(rtype, resource)
            if err is not None:
                return err
        return None

    def _direct_care(self, ctx: RequestContext, p: Principal, pid: str, interaction: str, rtype: str,
                     resource: dict[str, Any], facts: Facts) -> OperationOutcomeError | None:
        purposes = ctx.purpose_of_use
        st = state(ctx)
        writing = interaction in WRITES
        if any(x in SECONDARY for x in purposes):
            f = self.facts(p, pid)
            d = self._pdp(p, pid, purposes, f, facts, ndoo=self._ndoo(pid, f))
            note(ctx, f"policy: {d.verdict.lower()} Patient/{pid} for {'/'.join(purposes)} ({d.basis})")
            return None if d.permitted else _error_404(rtype, resource)
        mine = org_keys(p)
        if not writing and mine & facts.light.author_keys:
            note(ctx, f"policy: permit Patient/{pid}: written by the caller's organisation (rule:own-record)")
            return None
        if not writing and self._addressed(p, rtype, resource):
            note(ctx, f"policy: permit {rtype}/{resource.get('id')}: a referral addressed to the caller")
            return None
        f = self.facts(p, pid)
        btg = st.btg_request or f.grant is not None
        creating_person = writing and rtype == "Patient" and (interaction == "create" or self._names_me(p, resource))
        if not f.related and not creating_person:
            if not btg:
                note(ctx, f"policy: deny Patient/{pid}: no care relationship")
                if writing:
                    return forbidden(f"You have no care relationship with Patient/{pid} (care team, episode of care, "
                                     "accepted referral or registered GP), so you may not write to their record")
                return _error_404(rtype, resource)
            d = self._pdp(p, pid, ("BTG",), f, facts)
            if d.permitted:
                self._flag(ctx, pid, f, f"no care relationship; {d.basis}")
        else:
            d = self._pdp(p, pid, purposes, f, facts)
            if not d.permitted and btg:
                d2 = self._pdp(p, pid, ("BTG",), f, facts)
                if d2.permitted:
                    d = d2
                    self._flag(ctx, pid, f, f"overrides {d2.basis}")
            elif d.break_glass:
                self._flag(ctx, pid, f, d.basis)
        if not d.permitted:
            note(ctx, f"policy: deny Patient/{pid} ({d.basis})")
            return self._withheld(rtype, resource, d.basis, related=f.related)
        hidden = security_codes(resource) & self.g.hidden_labels
        if hidden and not writing:  # (what the caller's organisation wrote was permitted above)
            note(ctx, f"policy: deny Patient/{pid}: restricted label {min(hidden)[1]}")
            return self._withheld(rtype, resource, "label:restricted", related=f.related)
        note(ctx, f"policy: permit Patient/{pid} ({d.basis}{', care relationship' if f.related else ''})")
        return None

    def _personal(self, ctx: RequestContext, p: Principal, pid: str, interaction: str, rtype: str,
                  resource: dict[str, Any], facts: Facts) -> OperationOutcomeError | None:
        writing = interaction in WRITES
        f = self.facts(p, pid)
        if p.kind == "relatedPerson" and writing and rtype == "Consent" and self._proxy_authority(p):
            note(ctx, f"policy: permit Patient/{pid}: a proxy with legal authority records a consent")
            return None
        action = "correct" if writing and p.kind == "relatedPerson" else "access"
        d = self._pdp(p, pid, ctx.purpose_of_use, f, facts, action=action)
        note(ctx, f"policy: {d.verdict.lower()} Patient/{pid} ({d.basis})")
        if d.permitted:
            return None
        if writing:
            return forbidden(f"You may not write this {rtype} to Patient/{pid}'s record ({d.basis})")
        return _error_404(rtype, resource)

    def _withheld(self, rtype: str, resource: dict[str, Any], basis: str, *, related: bool) -> OperationOutcomeError:
        if not related:
            return _error_404(rtype, resource)
        extra = " A professional allowed to break glass may ask for it in an emergency (X-Purpose-Of-Use: BTG " \
                "with X-Break-Glass-Reason)." if not basis.startswith(("rule:nopat", "label:")) else ""
        return OperationOutcomeError(403, "suppressed", f"{rtype}/{resource.get('id') or '?'} is withheld from you by "
                                     f"the person's sharing choices or its confidentiality ({basis}).{extra}")

    def _flag(self, ctx: RequestContext, pid: str, f: PatientFacts, why: str) -> None:
        st = state(ctx)
        st.flagged.add(pid)
        if f.grant is not None:
            st.grants[pid] = f.grant
        note(ctx, f"policy: break-glass access to Patient/{pid} ({why})")

    def _addressed(self, p: Principal, rtype: str, resource: dict[str, Any]) -> bool:
        from service.policy.authorship import _key_of

        field_name = {"Task": "owner", "ServiceRequest": "performer"}.get(rtype)
        if field_name is None:
            return False
        refs = resource.get(field_name)
        keys = actor_keys(p)
        return any(_key_of(r) & keys for r in (refs if isinstance(refs, list) else [refs]))

    @staticmethod
    def _names_me(p: Principal, patient: dict[str, Any]) -> bool:
        """A Patient whose registered GP or managing organisation is the caller (a registration)."""
        from service.policy.authorship import _key_of

        keys = actor_keys(p)
        refs = list(patient.get("generalPractitioner") or []) + [patient.get("managingOrganization")]
        return any(_key_of(r) & keys for r in refs)

    def _proxy_authority(self, p: Principal) -> bool:
        if not p.fhir_user or not p.fhir_user.startswith("RelatedPerson/"):
            return False
        stored = self.session.store.current(self.conn, "RelatedPerson", p.fhir_user.split("/", 1)[1])
        if stored is None or stored.content is None:
            return False
        rp = stored.json()
        codes = {c.get("code") for cc in rp.get("relationship") or [] for c in (cc.get("coding") or [])
                 if isinstance(c, dict)}
        return rp.get("active") is not False and bool(codes & PROXY_AUTHORITY)

    # -- searches -----------------------------------------------------------------------------------
    def condition(self, ctx: RequestContext) -> PolicyCondition | None:
        """The SQL condition for patient data (the same object for every type), or None to deny it all."""
        self._fresh()
        key = (ctx.purpose_of_use, id(ctx))
        if self._condition is not None and self._condition[0] == key:
            return self._condition[1]
        cond = self._build_condition(ctx)
        self._condition = (key, cond)
        return cond

    def _build_condition(self, ctx: RequestContext) -> PolicyCondition | None:
        self._approximate = False
        p = self.inner._principal(ctx)
        purposes = ctx.purpose_of_use
        st = state(ctx)
        if p.kind in ("patient", "relatedPerson"):
            pid = p.patient
            if not pid:
                return None
            f = self.facts(p, pid)
            d = self._pdp(p, pid, purposes, f, None)
            note(ctx, f"policy: search {d.verdict.lower()} Patient/{pid} ({d.basis})")
            if not d.permitted:
                return None
            reds = (Redaction(frozenset({pid}), tuple(d.obligations)),) if d.obligations else ()
            return PolicyCondition(patients=[pid], redactions=reds, exact=sqlfilter.exact(d.obligations))
        if p.kind not in ("practitioner", "system"):
            return None
        if any(x in SECONDARY for x in purposes):
            from service.policy.optout import opted_out_patients

            found = consents.with_shapes(self.conn, None, self.base)
            reds = self._redactions(ctx, p, found, purposes, frozenset(), set())
            note(ctx, f"policy: search for {'/'.join(purposes)}: National Data Opt-out excluded; consents of "
                      f"{len(found)} people applied")
            return PolicyCondition(patients=None, exclude=opted_out_patients(), redactions=reds, exact=self._exact(reds),
                                   hidden_labels=self.g.hidden_labels)
        keys = actor_keys(p)
        own = org_keys(p)
        granted = break_glass.active_patients(self.conn, p.subject, self.now) if p.kind == "practitioner" else set()
        related = relationships.related_patients(keys, self.now)
        if st.btg_request:
            patients: Any = None
            scope_sql = None
            st.candidates.add("*")
        else:
            scope_sql = related if not granted else union(related, *[select(literal(g)) for g in sorted(granted)])
            patients = scope_sql
            st.candidates |= granted
        found = consents.with_shapes(self.conn, scope_sql, self.base)
        btg_for = set(found) if st.btg_request else (set(found) & granted)
        reds = self._redactions(ctx, p, found, purposes, own, btg_for)
        note(ctx, "policy: search limited to patients in a care relationship with the caller"
             + (f" and {len(granted)} break-glass grant(s)" if granted else "")
             + (" (break-glass: any patient)" if st.btg_request else "")
             + f"; consents of {len(found)} people applied")
        return PolicyCondition(patients=patients, redactions=reds, own=own, addressed_to=keys, exact=self._exact(reds),
                               hidden_labels=self.g.hidden_labels)

    def _exact(self, reds: tuple[Redaction, ...]) -> bool:
        return not self._approximate and all(sqlfilter.exact(r.obligations) for r in reds)

    def _redactions(self, ctx: RequestContext, p: Principal, found: dict[str, list[Any]], purposes: tuple[str, ...],
                    own: frozenset[str], btg_for: set[str]) -> tuple[Redaction, ...]:
        """Each consented person's request-mode decision as SQL redactions; people whose consents have the
        same shape share one decision and one redaction (so the SQL grows with the kinds of consent, not
        with the number of people)."""
        st = state(ctx)
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
                st.dependent.add(pid)
            if d.basis == "rule:too-complex":
                self._approximate = True
                continue  # decided per resource after paging
            theirs = ", ".join(sorted(f"Consent/{c.id}" for c in cs))  # (a shared decision names another's)
            if not d.permitted:
                groups.setdefault((True, (), own), set()).add(pid)
                st.suppressed[pid] = theirs if d.basis.startswith("Consent/") else d.basis
            elif d.obligations:
                plain = tuple(dict.fromkeys(replace(o, basis="") for o in d.obligations))
                groups.setdefault((False, plain, frozenset()), set()).add(pid)
                st.suppressed[pid] = theirs
        if secondary:
            st.suppressed.clear()
        return tuple(Redaction(frozenset(pids), obligations, drop_all=drop_all, unless=unless)
                     for (drop_all, obligations, unless), pids in groups.items())

