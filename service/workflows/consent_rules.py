"""Write rules for Consent resources (a crud write hook): what the decision point needs to be able to decide.

- The consent must be computable (consent.validate_consent: patient, status, scope, category, dateTime,
  policy or policyRule, typed provisions, known codes for purposes, actions, classes and labels).
- It names its patient by a reference to a Patient on this server, which never changes afterwards.
- `policyRule` is v3-ActCode OPTIN/OPTINR/OPTOUT/OPTOUTE when given.
- Every `provision.actor.reference` resolves: a local reference must exist (the ODS code or SDS user id is
  added beside it so the decision point can match either); an identifier-only ODS code gets the local
  Organization's reference when there is one; an external reference with nothing we can match is refused.
- Who records it: the patient (performer defaults to them), a proxy with legal authority (the guard checks
  the authority; performer defaults to them), or a professional/partner system recording the person's
  wishes, who must name the person (`performer`: the Patient or a RelatedPerson) and the source
  (`sourceAttachment` or `sourceReference`); `organization` defaults to theirs.
Consents are versioned like everything else; withdrawing one is an update (status `inactive` or a newer
consent), never a delete (the guard answers 405).
"""

from __future__ import annotations

from typing import Any

from consent import validate_consent
from service.access.context import ODS, org_reference
from service.fhir.outcome import Issue, unprocessable
from service.repository import Change, Repository

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_CODE_ALIASES = {ACT_CODE, "http://hl7.org/fhir/v3/ActCode", "urn:oid:2.16.840.1.113883.5.4"}
POLICY_RULES = frozenset({"OPTIN", "OPTINR", "OPTOUT", "OPTOUTE"})
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
IDENTIFIER_FOR = {"Organization": ODS, "Practitioner": SDS_USER}


def _issue(path: str, text: str, code: str = "invalid") -> Issue:
    return Issue("error", code, f"{path}: {text}", (path,))


def _local(repo: Repository, text: str) -> tuple[str, str] | None:
    base = repo.base.rstrip("/") + "/"
    text = text.removeprefix(base)
    parts = text.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    if len(parts) == 2 and "://" not in text:
        return parts[0], parts[1]
    return None


def _identifier_of(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system and isinstance(ident.get("value"), str):
            return ident["value"]
    return None


def _resolve_actor(repo: Repository, ref: Any, path: str, issues: list[Issue]) -> None:
    if not isinstance(ref, dict):
        return
    text = ref.get("reference")
    ident = ref.get("identifier") if isinstance(ref.get("identifier"), dict) else None
    if isinstance(text, str) and text:
        local = _local(repo, text)
        if local is None:
            if ident is None:
                issues.append(_issue(f"{path}.reference", f"{text!r} is not on this server and has no identifier, so "
                                     "it could never be matched; refer to a local resource or give its identifier"))
            return
        rtype, rid = local
        stored = repo.server().get(rtype, rid)  # the actors named: directory entries and the person's own
        if stored is None:
            issues.append(_issue(f"{path}.reference", f"{rtype}/{rid} is not known on this server", "not-found"))
            return
        system = IDENTIFIER_FOR.get(rtype)
        if ident is None and system:
            value = _identifier_of(stored.json(), system)
            if value:
                ref["identifier"] = {"system": system, "value": value}
        return
    if ident is not None and ident.get("system") == ODS and isinstance(ident.get("value"), str):
        found = repo.server().find("Organization", [("identifier", f"{ODS}|{ident['value']}")])
        if len(found) == 1:
            ref["reference"] = f"Organization/{found[0].res_id}"


def _provisions(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for i, child in enumerate(node.get("provision") or []):
            out += _provisions(child, f"{path}.provision[{i}]")
    return out


class ConsentRules:
    """The repository's write rule for Consent."""

    def before(self, repo: Repository, rtype: str, before: dict[str, Any] | None, after: dict[str, Any],
               change: Change) -> None:
        issues = [_issue(problem.split(":", 1)[0], problem.split(":", 1)[1].strip() if ":" in problem else problem)
                  for problem in validate_consent(after, base_urls=(repo.base,))]
        patient = after.get("patient") if isinstance(after.get("patient"), dict) else {}
        local = _local(repo, patient.get("reference") or "") if isinstance(patient.get("reference"), str) else None
        if local is None or local[0] != "Patient":
            issues.append(_issue("Consent.patient.reference", "must refer to the Patient on this server whose consent "
                                 "this is (an NHS number alone cannot be enforced)", "required"))
        elif repo.server().get("Patient", local[1]) is None:  # (the caller may write to this person's record)
            issues.append(_issue("Consent.patient.reference", f"Patient/{local[1]} is not known", "not-found"))
        if before is not None and isinstance(before.get("patient"), dict) and local is not None:
            was = _local(repo, before["patient"].get("reference") or "")
            if was is not None and was != local:
                issues.append(_issue("Consent.patient", "a consent cannot move to another patient; record a new one"))
        for i, rule in enumerate(after.get("policyRule", {}).get("coding") or []
                                 if isinstance(after.get("policyRule"), dict) else []):
            if isinstance(rule, dict) and rule.get("system") in ACT_CODE_ALIASES and rule.get("code") not in POLICY_RULES:
                issues.append(_issue(f"Consent.policyRule.coding[{i}].code",
                                     f"{rule.get('code')!r} is not a consent policy rule (OPTIN, OPTINR, OPTOUT, OPTOUTE)",
                                     "code-invalid"))
        for path, node in _provisions(after.get("provision"), "Consent.provision"):
            for j, a in enumerate(node.get("actor") or []):
                if isinstance(a, dict):
                    _resolve_actor(repo, a.get("reference"), f"{path}.actor[{j}]", issues)
        self._recorder_rules(repo, after, issues)
        if issues:
            raise unprocessable(issues)

    @staticmethod
    def _recorder_rules(repo: Repository, after: dict[str, Any], issues: list[Issue]) -> None:
        p = repo.ctx.principal
        if p is None or p.kind == "admin":
            return
        if p.kind in ("patient", "relatedPerson"):
            if not after.get("performer") and p.fhir_user:
                after["performer"] = [{"reference": p.fhir_user}]
            return
        performers = [r.get("reference", "") for r in after.get("performer") or [] if isinstance(r, dict)]
        if not any(isinstance(r, str) and ("Patient/" in r or "RelatedPerson/" in r) for r in performers):
            issues.append(_issue("Consent.performer", "a professional recording a person's wishes must name whose "
                                 "wishes they are (the Patient, or a RelatedPerson acting for them)", "required"))
        if not after.get("sourceAttachment") and not after.get("sourceReference"):
            issues.append(_issue("Consent.source[x]", "a professional recording a person's wishes must say where they "
                                 "come from (sourceAttachment, e.g. the conversation, or sourceReference)", "required"))
        if not after.get("organization"):
            org = org_reference(p)
            if org is not None:
                after["organization"] = [org]

    def after(self, repo: Repository, stored: Any, before: dict[str, Any] | None, change: Change) -> None:
        return None


