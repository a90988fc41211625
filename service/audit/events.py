"""Build AuditEvents (R4, shaped after IHE BALP) from the request context and the interaction.

Pure functions: no database. `rest_event` covers every FHIR interaction (success or failure);
`audit_event` is the general builder other modules use for logins, tokens, decisions, break-glass.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import orjson

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.audit import codes as c
from service.clock import fhir_instant, now_us

PATIENT_FIELDS = ("subject", "patient", "beneficiary", "for", "individual")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_HISTORY_LOC = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([^/]+))?$")


def patient_of_reference(ref: Any) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str):
        return None
    m = _PATIENT_REF.search(ref)
    return m.group(1) if m else None


def patients_of(resource: dict[str, Any]) -> list[str]:
    """The patients a resource is about: itself for a Patient, else its subject/patient-like references."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return [resource["id"]] if resource.get("id") else []
    if rtype == "AuditEvent":
        return []
    out = []
    for name in PATIENT_FIELDS:
        pid = patient_of_reference(resource.get(name))
        if pid and pid not in out:
            out.append(pid)
    return out


def outcome_code(status: int) -> str:
    return "0" if status < 400 else ("4" if status < 500 else "8")


def diagnostics(body: bytes | None) -> str | None:
    if not body:
        return None
    try:
        oo = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(oo, dict) or oo.get("resourceType") != "OperationOutcome":
        return None
    return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in oo.get("issue", []))[:2000] or None


# -- agents and entities -------------------------------------------------------------------------
def agents(ctx: RequestContext | None, base: str, remote: str | None = None) -> list[dict[str, Any]]:
    p = ctx.principal if ctx else None
    pou = [c.concept(c.ACT_REASON, code) for code in (ctx.purpose_of_use if ctx else ())]
    remote = remote or (ctx.remote_addr if ctx else None)
    out: list[dict[str, Any]] = []
    if p is None:
        out.append({"type": c.USER_AGENT, "who": {"display": "unauthenticated"}, "requestor": True})
    elif p.kind != "system":
        who: dict[str, Any] = {"identifier": {"system": c.USER_ID, "value": p.subject}}
        if p.fhir_user:
            who["reference"] = p.fhir_user
        user: dict[str, Any] = {"type": c.USER_AGENT, "who": who, "altId": p.subject, "requestor": True}
        roles = []
        if p.role_code:
            roles.append(c.concept(c.SDS_JOB_ROLE, p.role_code, c.JOB_ROLES.get(p.role_code)))
        roles += [c.concept(c.SERVICE_ROLE, r) for r in sorted(p.roles)]
        if p.kind:
            roles.append(c.concept(c.SERVICE_ROLE, f"kind:{p.kind}"))
        if roles:
            user["role"] = roles
        if p.token_id:
            user["policy"] = [p.token_id]
        if pou:
            user["purposeOfUse"] = pou
        out.append(user)
    if p is not None and (p.organisation or p.ods_code):
        org: dict[str, Any] = {}
        if p.organisation:
            org["reference"] = p.organisation
        if p.ods_code:
            org["identifier"] = {"system": c.ODS, "value": p.ods_code}
        out.append({"type": c.ORG_AGENT, "who": org, "requestor": False})
    client: dict[str, Any] = {"type": c.CLIENT_AGENT, "requestor": p is not None and p.kind == "system"}
    if p is not None and p.client_id:
        client["who"] = {"identifier": {"system": c.CLIENT_ID, "value": p.client_id}}
    elif p is not None and p.kind == "system":
        client["who"] = {"identifier": {"system": c.CLIENT_ID, "value": p.subject}}
    if p is not None and p.kind == "system" and pou:
        client["purposeOfUse"] = pou
    if remote:
        client["network"] = {"address": remote, "type": "2"}
    if "who" in client or "network" in client:
        out.append(client)
    out.append({"type": c.SERVER_AGENT, "who": {"display": "Shared care record FHIR server"}, "requestor": False,
                "network": {"address": base, "type": "5"}})
    return out


def patient_entity(pid: str) -> dict[str, Any]:
    return {"what": {"reference": f"Patient/{pid}"}, "type": c.ENTITY_PERSON, "role": c.ROLE_PATIENT}


def resource_entity(ref: str) -> dict[str, Any]:
    return {"what": {"reference": ref}, "type": c.ENTITY_OBJECT, "role": c.ROLE_RESOURCE}


def query_entity(method: str, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    from urllib.parse import urlencode

    qs = urlencode(params)
    return {"type": c.ENTITY_OBJECT, "role": c.ROLE_QUERY, "description": f"{method} {path}" + (f"?{qs}" if qs else ""),
            "query": base64.b64encode(qs.encode()).decode()}


def request_entity(ctx: RequestContext | None, notes: Iterable[str] = ()) -> dict[str, Any]:
    ent: dict[str, Any] = {"what": {"identifier": {"value": ctx.request_id if ctx else "unknown"}},
                           "type": c.ENTITY_REQUEST_ID}
    details = [{"type": "policy", "valueString": n} for n in notes]
    if details:
        ent["detail"] = details
    return ent


def purpose_of_event(ctx: RequestContext | None, record: RequestRecord | None = None) -> list[dict[str, Any]]:
    if ctx is None:
        return []
    purposes = ctx.purpose_of_use
    reason = ctx.break_glass_reason
    if record is not None and record.btg_reason:  # an access that ran under break-glass is flagged BTG
        purposes = (*purposes, "BTG") if "BTG" not in purposes else purposes
        reason = reason or record.btg_reason
    out = []
    for code in purposes:
        text = reason if code == "BTG" and reason else None
        out.append(c.concept(c.ACT_REASON, code, text=text))
    return out


def audit_event(ctx: RequestContext | None, base: str, *, type: dict[str, Any], subtype: Iterable[dict[str, Any]] = (),
                action: str = "E", outcome: str = "0", outcome_desc: str | None = None,
                patients: Iterable[str] = (), entities: Iterable[dict[str, Any]] = (),
                recorded: int | None = None, remote: str | None = None,
                record: RequestRecord | None = None) -> dict[str, Any]:
    """A complete AuditEvent (BALP shape): agents from the context, patient entities, request id entity."""
    event: dict[str, Any] = {"resourceType": "AuditEvent", "type": type}
    sub = list(subtype)
    if sub:
        event["subtype"] = sub
    event["action"] = action
    event["recorded"] = fhir_instant(recorded or now_us())
    event["outcome"] = outcome
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc
    pou = purpose_of_event(ctx, record)
    if pou:
        event["purposeOfEvent"] = pou
    event["agent"] = agents(ctx, base, remote)
    event["source"] = {"site": base, "observer": {"display": "Shared care record FHIR server"},
                       "type": [c.coding(c.SOURCE_TYPE, "4", "Application Server")]}
    ents = [patient_entity(p) for p in dict.fromkeys(patients)]
    ents += list(entities)
    ents.append(request_entity(ctx, record.notes if record is not None else ()))
    event["entity"] = ents
    return event


# -- FHIR interactions ---------------------------------------------------------------------------
def _path_target(path: str) -> tuple[str | None, str | None]:
    parts = [p for p in path.split("/") if p]
    rtype = parts[0] if parts and parts[0][:1].isupper() else None
    rid = parts[1] if rtype and len(parts) > 1 and parts[1][:1] not in ("$", "_") else None
    return rtype, rid


def bundle_resources(body: bytes | None) -> list[dict[str, Any]]:
    """The resources in the entries of a Bundle body (none when it is not one)."""
    return entry_resources(json_object(body))


def entry_resources(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The resources in the entries of a parsed Bundle (none when it is not one)."""
    out = []
    for e in (doc or {}).get("entry") or []:
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict):
            out.append(res)
    return out


def json_object(body: bytes | None) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, or not an object)."""
    if not body:
        return None
    try:
        v = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return v if isinstance(v, dict) else None


def rest_parts(interaction: str, method: str, path: str, params: list[tuple[str, str]], status: int,
               headers: dict[str, str], req_body: bytes | None, record: RequestRecord,
               ) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """(subtype codings, action, entities) for a FHIR interaction and its response. Which patients it
    concerns and which resources it touched come from the request's record (the repository's answer)."""
    op = None
    name = interaction
    if interaction.startswith("operation:"):
        name, op = "operation", interaction.split(":", 1)[1]
    if name == "transaction":
        root = json_object(req_body) if req_body else None
        if root is not None and root.get("type") == "batch":
            name = "batch"
    code, action = c.INTERACTIONS.get(name, (None, "E"))
    subtype = [c.coding(c.RESTFUL, code) if code else c.coding(c.LOCAL_EVENT, name)]
    if op:
        subtype.append(c.coding(c.OPERATION, op))
    elif code and name != code:
        subtype.append(c.coding(c.OPERATION, name))
    rtype, rid = _path_target(path)
    entities: list[dict[str, Any]] = []
    ok = status < 400
    if name in c.SEARCHES or (name == "operation" and rid is None) or name == "history-type" and not ok:
        entities.append(query_entity(method, path, params))
        return subtype, action, entities
    if name in ("history-type", "history-system", "batch", "transaction"):
        if name in ("batch", "transaction"):
            entities += [resource_entity(ref) for ref in record.entities]
        return subtype, action, entities
    # instance-level interactions and create
    ref = None
    if ok and headers.get("Location"):
        m = _HISTORY_LOC.search(headers["Location"])
        if m:
            ref = m.group(0)
    if ref is None and rtype and rid:
        ref = f"{rtype}/{rid}"
        version = (headers.get("ETag") or "").removeprefix("W/").strip('"')
        if ok and version.isdigit():
            ref += f"/_history/{version}"
    if ref is None and rtype:
        ref = rtype
    if ref is not None:
        entities.append(resource_entity(ref))
    return subtype, action, entities


def rest_event(ctx: RequestContext | None, record: RequestRecord, base: str, *, method: str, path: str,
               params: list[tuple[str, str]], status: int, body: bytes | None, headers: dict[str, str],
               req_body: bytes | None = None, remote: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The AuditEvent for one FHIR interaction, and the patients it concerns (the owners of everything the
    repository decided on, and the patient named by a compartment path)."""
    subtype, action, entities = rest_parts(record.interaction, method, path, params, status, headers, req_body,
                                           record)
    patients = list(record.patients)
    rtype, rid = _path_target(path)
    if rtype == "Patient" and rid and rid not in patients:
        patients.insert(0, rid)
    event = audit_event(ctx, base, type=c.TYPE_REST, subtype=subtype, action=action, outcome=outcome_code(status),
                        outcome_desc=diagnostics(body) if status >= 400 else None, patients=patients,
                        entities=entities, remote=remote, record=record)
    return event, patients
