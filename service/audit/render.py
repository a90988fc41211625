"""An audit_log row as an R4 AuditEvent shaped after IHE BALP (Basic Audit Log Patterns), built when read.

`type` rest (or User Authentication, policy decision, break-glass), `subtype` the interaction (+ the
operation), `action` C/R/U/D/E, `outcome` 0/4/8 with the diagnostics in `outcomeDesc`; agents: the user (IRCP;
fhirUser and user id, SDS job role and service roles, token id, purpose of use), their organisation (PROV),
the client (110153; client id, remote address) and this server (110152); entities: the patients concerned
(role 1), the resource (`Type/id/_history/v`, role 4), the query of a search (role 24) and the request id
(BALP XrequestId, with the policy's notes). An AuditEvent a partner sent is returned as sent, with our id, the
time we received it (`meta.lastUpdated`) and its source (`meta.source`).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from service.audit import codes as c
from service.clock import fhir_instant

KIND_TYPE = {"rest": c.TYPE_REST, "login": c.TYPE_LOGIN, "token": c.TYPE_LOGIN, "decision": c.TYPE_POLICY,
             "break-glass": c.TYPE_BREAK_GLASS}
SOURCE = "urn:sharedcare:client:"


def event_id(seq: int) -> str:
    return str(seq)


def render(row: Any, base: str) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    detail = orjson.loads(m["detail"])
    meta = {"versionId": "1", "lastUpdated": fhir_instant(m["recorded"])}
    if m["kind"] in ("partner", "legacy") and isinstance(detail.get("event"), dict):
        event = {k: v for k, v in detail["event"].items() if k not in ("id", "meta")}
        if m["kind"] == "partner" and detail.get("source"):
            meta["source"] = SOURCE + str(detail["source"])
        return {"resourceType": "AuditEvent", "id": event_id(m["seq"]), "meta": meta, **event}
    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": event_id(m["seq"]), "meta": meta,
                             "type": KIND_TYPE.get(m["kind"], c.TYPE_REST)}
    event["subtype"] = _subtype(m["kind"], m["interaction"])
    event["action"] = m["action"]
    event["recorded"] = fhir_instant(m["recorded"])
    event["outcome"] = str(m["outcome"])
    if detail.get("desc"):
        event["outcomeDesc"] = detail["desc"]
    purposes = [p for p in (m["purpose"] or "").split(",") if p]
    if purposes:
        event["purposeOfEvent"] = [c.concept(c.ACT_REASON, p, text=detail.get("btg") if p == "BTG" else None)
                                   for p in purposes]
    event["agent"] = _agents(m, detail, purposes, base)
    event["source"] = {"site": base, "observer": {"display": "Shared care record FHIR server"},
                       "type": [c.coding(c.SOURCE_TYPE, "4", "Application Server")]}
    event["entity"] = _entities(m, detail)
    return event


def _subtype(kind: str, interaction: str) -> list[dict[str, Any]]:
    if kind == "login":
        return [c.SUBTYPE_LOGIN]
    if kind == "token":
        return [c.SUBTYPE_TOKEN]
    if kind in ("decision", "break-glass"):
        return [c.coding(c.LOCAL_EVENT, interaction)]
    name, op = interaction, None
    if interaction.startswith("operation:"):
        name, op = "operation", interaction.split(":", 1)[1]
    code = c.INTERACTIONS.get(name, (None, "E"))[0]
    out = [c.coding(c.RESTFUL, code) if code else c.coding(c.LOCAL_EVENT, name)]
    if op:
        out.append(c.coding(c.OPERATION, op))
    elif code and name != code:
        out.append(c.coding(c.OPERATION, name))
    return out


def _agents(m: Any, detail: dict[str, Any], purposes: list[str], base: str) -> list[dict[str, Any]]:
    user = detail.get("user")
    pou = [c.concept(c.ACT_REASON, p) for p in purposes]
    out: list[dict[str, Any]] = []
    if user is None:
        out.append({"type": c.USER_AGENT, "who": {"display": "unauthenticated"}, "requestor": True})
    elif user.get("kind") != "system":
        who: dict[str, Any] = {"identifier": {"system": c.USER_ID, "value": user["id"]}}
        agent = m["agent"] or ""
        if "/" in agent and not agent.startswith(("user:", "client:")):
            who["reference"] = agent
        a: dict[str, Any] = {"type": c.USER_AGENT, "who": who, "altId": user["id"], "requestor": True}
        roles = []
        if user.get("role"):
            roles.append(c.concept(c.SDS_JOB_ROLE, user["role"], c.JOB_ROLES.get(user["role"])))
        roles += [c.concept(c.SERVICE_ROLE, r) for r in user.get("roles") or ()]
        if user.get("kind"):
            roles.append(c.concept(c.SERVICE_ROLE, f"kind:{user['kind']}"))
        if roles:
            a["role"] = roles
        if user.get("token"):
            a["policy"] = [user["token"]]
        if pou:
            a["purposeOfUse"] = pou
        out.append(a)
    org = m["organisation"]
    if org:
        ref = {"identifier": {"system": c.ODS, "value": org.split("|", 1)[1]}} if "|" in org else {"reference": org}
        if user and user.get("ods") and "reference" in ref:
            ref["identifier"] = {"system": c.ODS, "value": user["ods"]}
        out.append({"type": c.ORG_AGENT, "who": ref, "requestor": False})
    system = user is not None and user.get("kind") == "system"
    client: dict[str, Any] = {"type": c.CLIENT_AGENT, "requestor": system}
    name = m["client"] or (user["id"] if system else None)
    if name:
        client["who"] = {"identifier": {"system": c.CLIENT_ID, "value": name}}
    if system and pou:
        client["purposeOfUse"] = pou
    if detail.get("remote"):
        client["network"] = {"address": detail["remote"], "type": "2"}
    if "who" in client or "network" in client:
        out.append(client)
    out.append({"type": c.SERVER_AGENT, "who": {"display": "Shared care record FHIR server"}, "requestor": False,
                "network": {"address": base, "type": "5"}})
    return out


def _entities(m: Any, detail: dict[str, Any]) -> list[dict[str, Any]]:
    patients = [m["patient_id"]] if m["patient_id"] else []
    patients += [p for p in detail.get("patients") or () if p not in patients]
    ents: list[dict[str, Any]] = [{"what": {"reference": f"Patient/{p}"}, "type": c.ENTITY_PERSON,
                                   "role": c.ROLE_PATIENT} for p in patients]
    kind = m["kind"]
    if kind == "login" and detail.get("login"):
        ents.append({"what": {"identifier": {"system": c.USER_ID, "value": detail["login"]}},
                     "type": c.ENTITY_PERSON, "role": c.coding(c.OBJECT_ROLE, "11", "Security User Entity")})
    if kind == "token":
        det = [{"type": "scope", "valueString": detail.get("scope", "")}]
        if detail.get("for_user"):
            det.append({"type": "user", "valueString": detail["for_user"]})
        ents.append({"what": {"identifier": {"system": c.CLIENT_ID, "value": m["client"] or detail.get("for_client")
                                             or ""}},
                     "type": c.ENTITY_OBJECT, "role": c.coding(c.OBJECT_ROLE, "11", "Security User Entity"),
                     "detail": det})
    target = m["target"]
    if "query" in detail or (kind == "rest" and target and "/" not in target and m["interaction"] != "capabilities"):
        qs = detail.get("query", "")
        desc = f"{detail.get('method', 'GET')} {target or ''}" + (f"?{qs}" if qs else "")
        ents.append({"type": c.ENTITY_OBJECT, "role": c.ROLE_QUERY, "description": desc,
                     "query": base64.b64encode(qs.encode()).decode()})
    elif target:
        ents.append({"what": {"reference": target}, "type": c.ENTITY_OBJECT, "role": c.ROLE_RESOURCE})
    for ref in detail.get("entities") or ():
        ents.append({"what": {"reference": ref}, "type": c.ENTITY_OBJECT, "role": c.ROLE_RESOURCE})
    req: dict[str, Any] = {"what": {"identifier": {"value": m["request_id"] or "unknown"}},
                           "type": c.ENTITY_REQUEST_ID}
    notes = detail.get("notes") or ()
    if notes:
        req["detail"] = [{"type": "policy", "valueString": n} for n in notes]
    ents.append(req)
    return ents
