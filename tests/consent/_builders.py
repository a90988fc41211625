"""Builders for consent tests: FHIR Consent JSON, actors, resources and the R0 baseline of section B."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consent import Actor, Request, ResourceFacts
from consent import codes as c

NOW = datetime(2025, 6, 15, 10, 0, tzinfo=UTC)
PATIENT_REF = "Patient/p1"
NHS = "9434765919"
CONFIDENTIALITY_CODES = frozenset({"U", "L", "M", "N", "R", "V"})


def label_token(code: str) -> str:
    return c.token(c.CONFIDENTIALITY if code in CONFIDENTIALITY_CODES else c.ACT_CODE, code)


def ods(code: str) -> str:
    return f"{c.ODS_CODE}|{code.upper()}"


def org_keys(org: str) -> set[str]:
    return {f"Organization/{org}", ods(org)}


# ---- actors -----------------------------------------------------------------------------------------

def practitioner(pid: str = "dr-a", org: str = "rr8", groups: tuple[str, ...] = ()) -> Actor:
    return Actor(kind="practitioner", keys=frozenset({f"Practitioner/{pid}", f"Organization/{org}"}),
                 identifiers=frozenset({ods(org)}), groups=frozenset(groups))


def user_at(org: str, groups: tuple[str, ...] = ()) -> Actor:
    """A practitioner at organisation ``org`` (the table's "org 54", "RYJ", ...)."""
    return practitioner(f"user-{org}", org, groups)


def related_person(rid: str) -> Actor:
    return Actor(kind="relatedPerson", keys=frozenset({f"RelatedPerson/{rid}"}))


DR_A = practitioner()
THE_PATIENT = Actor(kind="patient", keys=frozenset({PATIENT_REF}), identifiers=frozenset({f"{c.NHS_NUMBER}|{NHS}"}))
BTG_MEMBER = practitioner("dr-a", "rr8", ("Group/btg-users",))


# ---- resources --------------------------------------------------------------------------------------

def resource(rtype: str = "Observation", rid: str = "o1", labels: tuple[str, ...] = ("N",),
             codes: tuple[str, ...] = (), author: str | None = "gp5", date: datetime | None | str = "2024-05-01",
             related: tuple[str, ...] = ()) -> ResourceFacts:
    when = datetime(2024, 5, 1, 9, 0, tzinfo=UTC) if date == "2024-05-01" else date
    assert when is None or isinstance(when, datetime)
    return ResourceFacts(type=rtype, id=rid, security=frozenset(label_token(x) for x in labels),
                         codes=frozenset(codes), author_keys=frozenset(org_keys(author) if author else ()),
                         date=when, related=frozenset(related))


R0_RESOURCE = resource()


def request(actor: Actor = DR_A, purposes: tuple[str, ...] = ("TREAT",), res: ResourceFacts | None = R0_RESOURCE,
            now: datetime = NOW, ndoo: bool = False, **more: Any) -> Request:
    """R0: Dr A at RR8, TREAT, access, an Observation labelled N by GP5 dated 2024-05-01, now 2025-06-15T10:00Z."""
    return Request(patient=PATIENT_REF, nhs_number=NHS, actor=actor, purposes=purposes, resource=res, now=now,
                   ndoo=ndoo, **more)


def request_mode(actor: Actor = DR_A, **kw: Any) -> Request:
    return request(actor, res=None, **kw)


def later(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


# ---- FHIR Consent JSON ------------------------------------------------------------------------------

def coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def label(code: str) -> dict[str, str]:
    system, _, value = label_token(code).rpartition("|")
    return coding(system, value)


def actor(ref: str, role: str = "PRCP") -> dict[str, Any]:
    """A provision actor; ``ref`` is ``Type/id`` or an identifier ``system|value``."""
    reference: dict[str, Any]
    if "|" in ref:
        system, _, value = ref.rpartition("|")
        reference = {"identifier": {"system": system, "value": value}}
    else:
        reference = {"reference": ref}
    return {"role": {"coding": [coding(c.PARTICIPATION_TYPE, role)]}, "reference": reference}


def prov(ptype: str | None, *children: dict[str, Any], actors: tuple[str, ...] = (), role: str = "PRCP",
         purposes: tuple[str, ...] = (), actions: tuple[str, ...] = (), labels: tuple[str, ...] = (),
         classes: tuple[str, ...] = (), loinc: tuple[str, ...] = (), period: tuple[str | None, str | None] | None = None,
         data_period: tuple[str | None, str | None] | None = None,
         data: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """A provision node: ``prov("permit", prov("deny", labels=("PSY",)))`` is root(permit) › deny(PSY)."""
    p: dict[str, Any] = {}
    if ptype is not None:
        p["type"] = ptype
    if period is not None:
        p["period"] = {k: v for k, v in zip(("start", "end"), period, strict=True) if v is not None}
    if actors:
        p["actor"] = [actor(a, role) for a in actors]
    if actions:
        p["action"] = [{"coding": [coding(c.CONSENT_ACTION, a)]} for a in actions]
    if labels:
        p["securityLabel"] = [label(x) for x in labels]
    if purposes:
        p["purpose"] = [coding(c.ACT_REASON, x) for x in purposes]
    if classes:
        p["class"] = [coding(c.RESOURCE_TYPES, x) for x in classes]
    if loinc:
        p["code"] = [{"coding": [coding("http://loinc.org", x)]} for x in loinc]
    if data_period is not None:
        p["dataPeriod"] = {k: v for k, v in zip(("start", "end"), data_period, strict=True) if v is not None}
    if data:
        p["data"] = [{"meaning": m, "reference": {"reference": r}} for m, r in data]
    if children:
        p["provision"] = list(children)
    return p


def consent(cid: str, provision: dict[str, Any] | None, date_time: str | None = "2024-01-01",
            status: str = "active", patient: str = PATIENT_REF, scope: str = "patient-privacy") -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "scope": {"coding": [coding(c.CONSENT_SCOPE, scope)]},
        "category": [{"coding": [coding("http://loinc.org", "59284-0")]}],
        "patient": {"reference": patient},
        "policyRule": {"coding": [coding(c.ACT_CODE, "OPTOUT")]},
    }
    if date_time is not None:
        out["dateTime"] = date_time
    if provision is not None:
        out["provision"] = provision
    return out


def with_changes(r: Request, **changes: Any) -> Request:
    return replace(r, **changes)
