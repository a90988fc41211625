"""The AuditEvent search parameters the audit log answers (service/audit/trail.py), as the CapabilityStatement
lists them."""

from __future__ import annotations

from typing import Any

SPEC = "http://hl7.org/fhir/SearchParameter/"
LOCAL = "https://sharedcare.example.org/fhir/SearchParameter/"


def _p(name: str, kind: str, definition: str, documentation: str | None = None) -> dict[str, Any]:
    out = {"name": name, "definition": definition, "type": kind}
    if documentation:
        out["documentation"] = documentation
    return out


CAPABILITY: list[dict[str, Any]] = [
    _p("patient", "reference", SPEC + "clinical-patient"),
    _p("agent", "reference", SPEC + "AuditEvent-agent"),
    _p("altid", "token", SPEC + "AuditEvent-altid"),
    _p("entity", "reference", SPEC + "AuditEvent-entity"),
    _p("date", "date", SPEC + "AuditEvent-date"),
    _p("outcome", "token", SPEC + "AuditEvent-outcome"),
    _p("action", "token", SPEC + "AuditEvent-action"),
    _p("type", "token", SPEC + "AuditEvent-type"),
    _p("subtype", "token", SPEC + "AuditEvent-subtype"),
    _p("purpose", "token", LOCAL + "AuditEvent-purpose",
       "The purpose of use (v3-ActReason: TREAT, ETREAT, BTG for break-glass, HRESCH, HOPERAT) of the access, or "
       "that a partner's event states"),
    _p("_id", "token", SPEC + "Resource-id"),
    _p("_lastUpdated", "date", SPEC + "Resource-lastUpdated"),
    _p("_tag", "token", SPEC + "Resource-tag"),
    _p("_profile", "uri", SPEC + "Resource-profile"),
    _p("_security", "token", SPEC + "Resource-security"),
    _p("_source", "uri", SPEC + "Resource-source"),
]
