"""Audit rows: what one access leaves in `audit_log`, built from the request's frozen context and its record.

Pure functions: no database. `access_row` covers every FHIR interaction (success or failure); `event_row` the
other events (sign-in, token, policy decision, break-glass); `partner_row` an AuditEvent a partner system sent.
`digest` is what the seals chain (every column, and the people an access reached).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from service.access.context import RequestContext
from service.access.record import RequestRecord
from service.audit import codes as c
from service.clock import now_us

_LOCATION = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([^/]+))?$")
MAX_DESC = 2000


@dataclass
class AuditRow:
    recorded: int
    kind: str
    interaction: str
    action: str
    outcome: int
    patients: tuple[str, ...] = ()
    status: int | None = None
    agent: str | None = None
    altid: str | None = None
    organisation: str | None = None
    client: str | None = None
    purpose: str | None = None
    target: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None  # assigned by the database

    @property
    def patient_id(self) -> str | None:
        return self.patients[0] if self.patients else None

    @property
    def pointed(self) -> bool:
        """Whether the row names several patients: its `audit_also` pointers need its `seq`, so it is never one
        INSERT of its own (service/audit/log.py)."""
        return len(self.patients) > 1

    def values(self) -> dict[str, Any]:
        """The audit_log row (without seq), `detail` as compact JSON carrying every person reached."""
        detail = dict(self.detail)
        if len(self.patients) > 1:
            detail["patients"] = list(self.patients)
        return {"recorded": self.recorded, "patient_id": self.patient_id, "kind": self.kind,
                "interaction": self.interaction[:64], "action": self.action, "outcome": self.outcome,
                "status": self.status, "agent": _cut(self.agent, 256), "altid": _cut(self.altid, 128),
                "organisation": _cut(self.organisation, 256),
                "client": _cut(self.client, 128), "purpose": _cut(self.purpose, 64), "target": _cut(self.target, 256),
                "request_id": self.request_id, "detail": orjson.dumps(detail).decode()}


COLUMNS = ("seq", "recorded", "patient_id", "kind", "interaction", "action", "outcome", "status", "agent", "altid",
           "organisation", "client", "purpose", "target", "request_id", "detail")


def _cut(text: str | None, n: int) -> str | None:
    return text[:n] if text is not None else None


def digest(row: Any) -> str:
    """SHA-256 over every column of a stored row (a mapping or a Row), in a fixed order and encoding."""
    m = row._mapping if hasattr(row, "_mapping") else row
    values = [m[k] for k in COLUMNS]
    return hashlib.sha256(orjson.dumps(values)).hexdigest()


def also_patients(row: Any) -> list[str]:
    """The people after the first that a stored row concerns (what `audit_also` must hold for it)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    found = orjson.loads(m["detail"]).get("patients") or []
    return [p for p in found if p != m["patient_id"]]


# -- who -------------------------------------------------------------------------------------------------
def _who(ctx: RequestContext | None) -> dict[str, Any]:
    """The agent columns and the caller's details, from the request context."""
    p = ctx.principal if ctx else None
    if p is None:
        return {"agent": None, "altid": None, "organisation": None, "client": None, "user": None}
    org = p.organisation or (f"{c.ODS}|{p.ods_code}" if p.ods_code else None)
    if p.kind == "system":
        agent = f"client:{p.client_id or p.subject}"
    else:
        agent = p.fhir_user or f"user:{p.subject}"
    user: dict[str, Any] = {"id": p.subject, "kind": p.kind}
    for key, value in (("role", p.role_code), ("ods", p.ods_code), ("token", p.token_id)):
        if value:
            user[key] = value
    if p.roles:
        user["roles"] = sorted(p.roles)
    return {"agent": agent, "altid": p.subject, "organisation": org, "client": p.client_id, "user": user}


def _purpose(ctx: RequestContext | None, record: RequestRecord | None) -> tuple[str | None, str | None]:
    if ctx is None:
        return None, None
    purposes = list(ctx.purpose_of_use)
    reason = ctx.break_glass_reason
    if record is not None and record.btg_reason:  # an access that ran under break-glass is flagged BTG
        if "BTG" not in purposes:
            purposes.append("BTG")
        reason = reason or record.btg_reason
    return ",".join(purposes) or None, (reason if "BTG" in purposes else None)


def _base(ctx: RequestContext | None, record: RequestRecord | None, *, kind: str, interaction: str, action: str,
          outcome: int, patients: tuple[str, ...], recorded: int | None = None, **extra: Any) -> AuditRow:
    who = _who(ctx)
    purpose, reason = _purpose(ctx, record)
    detail: dict[str, Any] = {}
    if who["user"]:
        detail["user"] = who["user"]
    if ctx is not None and ctx.remote_addr:
        detail["remote"] = ctx.remote_addr
    if reason:
        detail["btg"] = reason
    if record is not None and record.notes:
        detail["notes"] = list(record.notes)
    return AuditRow(recorded=recorded or now_us(), kind=kind, interaction=interaction, action=action, outcome=outcome,
                    patients=tuple(dict.fromkeys(patients)), agent=who["agent"], altid=who["altid"],
                    organisation=who["organisation"],
                    client=who["client"], purpose=purpose, request_id=ctx.request_id if ctx else None,
                    detail=detail, **extra)


def outcome_of(status: int) -> int:
    return 0 if status < 400 else (4 if status < 500 else 8)


def diagnostics(body: bytes | None) -> str | None:
    if not body:
        return None
    try:
        oo = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(oo, dict) or oo.get("resourceType") != "OperationOutcome":
        return None
    return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in oo.get("issue", []))[:MAX_DESC] or None


def _path_target(path: str) -> tuple[str | None, str | None]:
    parts = [p for p in path.split("/") if p]
    rtype = parts[0] if parts and parts[0][:1].isupper() else None
    rid = parts[1] if rtype and len(parts) > 1 and parts[1][:1] not in ("$", "_") else None
    return rtype, rid


def access_row(ctx: RequestContext | None, record: RequestRecord, *, method: str, path: str,
               params: list[tuple[str, str]], status: int, body: bytes | None, headers: dict[str, str],
               req_body: bytes | None = None) -> AuditRow:
    """The row for one FHIR interaction: the patients it concerns are the owners of everything the repository
    decided on (and the person a compartment path names); the resource is the version written or read."""
    interaction = record.interaction
    name = interaction
    if name == "transaction" and req_body and b'"batch"' in req_body[:4000]:
        root = orjson.loads(req_body) if req_body else {}
        if isinstance(root, dict) and root.get("type") == "batch":
            name = interaction = "batch"
    action = c.INTERACTIONS.get(name.split(":", 1)[0] if name.startswith("operation:") else name, (None, "E"))[1]
    rtype, rid = _path_target(path)
    patients = list(record.patients)
    if rtype == "Patient" and rid and rid not in patients:
        patients.insert(0, rid)
    row = _base(ctx, record, kind="rest", interaction=interaction, action=action, outcome=outcome_of(status),
                patients=tuple(patients), status=status)
    row.target = _target(name, path, rtype, rid, status, headers)
    searching = name in c.SEARCHES or (name.startswith("operation:") and rid is None) or name.startswith("history")
    if searching and params:
        from urllib.parse import urlencode

        row.detail["query"] = urlencode(params)
    if name in ("batch", "transaction") and record.entities:
        row.detail["entities"] = list(record.entities)
    if status >= 400:
        desc = diagnostics(body)
        if desc:
            row.detail["desc"] = desc
    row.detail["method"] = method
    return row


def _target(name: str, path: str, rtype: str | None, rid: str | None, status: int, headers: dict[str, str]
            ) -> str | None:
    if status < 400 and headers.get("Location"):
        m = _LOCATION.search(headers["Location"])
        if m:
            return m.group(0)
    if rtype and rid:
        version = (headers.get("ETag") or "").removeprefix("W/").strip('"')
        return f"{rtype}/{rid}" + (f"/_history/{version}" if status < 400 and version.isdigit() else "")
    return rtype or (path.split("?", 1)[0] or None)


def event_row(ctx: RequestContext | None, *, kind: str, interaction: str, outcome: int, desc: str | None = None,
              patients: tuple[str, ...] = (), target: str | None = None, record: RequestRecord | None = None,
              **detail: Any) -> AuditRow:
    """A sign-in, token, policy decision or break-glass event."""
    row = _base(ctx, record, kind=kind, interaction=interaction, action="E", outcome=outcome, patients=patients,
                target=target)
    if desc:
        row.detail["desc"] = desc[:MAX_DESC]
    row.detail.update({k: v for k, v in detail.items() if v is not None})
    return row


def partner_row(ctx: RequestContext, event: dict[str, Any], patients: tuple[str, ...]) -> AuditRow:
    """An AuditEvent a partner system sent (IHE ATNA): kept as sent, with when we received it and from whom."""
    row = _base(ctx, None, kind="partner", interaction="partner-event", action=str(event.get("action") or "E")[:1],
                outcome=_partner_outcome(event.get("outcome")), patients=patients)
    row.detail = {"event": event, "source": row.client or (ctx.principal.subject if ctx.principal else None)}
    row.target = None
    # what it says of itself, for search: its purposes of use, and who its requestor was
    purposes = [cd.get("code") for cc in [*(event.get("purposeOfEvent") or ()),
                                          *(pu for a in event.get("agent") or () if isinstance(a, dict)
                                            for pu in a.get("purposeOfUse") or ())]
                if isinstance(cc, dict) for cd in cc.get("coding") or () if isinstance(cd, dict)
                and cd.get("system") == c.ACT_REASON and isinstance(cd.get("code"), str)]
    row.purpose = ",".join(dict.fromkeys(purposes)) or None
    requestor = next((a for a in event.get("agent") or () if isinstance(a, dict) and a.get("requestor")), None)
    who = (requestor or {}).get("who") if isinstance(requestor, dict) else None
    row.agent = who.get("reference") if isinstance(who, dict) and isinstance(who.get("reference"), str) else None
    row.altid = (requestor or {}).get("altId") if isinstance((requestor or {}).get("altId"), str) else None
    return row


def _partner_outcome(value: Any) -> int:
    return int(value) if isinstance(value, str) and value in ("0", "4", "8", "12") else 0


def row_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(AuditRow))
