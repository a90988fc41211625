"""Plain words for codes: what someone did with a record, why, dates, sharing choices, answer errors."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

INTERACTIONS = {
    "read": "opened", "vread": "opened an earlier version of", "search-type": "searched", "search-system": "searched",
    "search-compartment": "looked through", "history-instance": "looked at the history of",
    "history-type": "looked at the history of", "create": "added", "update": "changed", "patch": "changed",
    "delete": "removed", "break-glass": "used emergency access to open", "permit": "was allowed to see",
    "deny": "was refused", "operation:everything": "looked at everything in", "operation:access-log":
    "looked at who has seen", "batch": "made several requests about", "transaction": "made several changes to",
}
THINGS = {
    "Patient": "your details", "CarePlan": "your care plan", "Goal": "your goals", "Consent": "your sharing choices",
    "QuestionnaireResponse": "your assessment", "CareTeam": "your care team", "Observation": "your test results",
    "Condition": "your health conditions", "MedicationRequest": "your medicines", "EpisodeOfCare": "your care",
    "Provenance": "the history of changes to your record", "Flag": "alerts on your record", "Task": "tasks",
    "RelatedPerson": "your carers and family", "AuditEvent": "who has seen your record",
    "Encounter": "your appointments and visits", "DocumentReference": "your documents", "Bundle": "your record",
}
PURPOSES = {
    "TREAT": "to care for you", "ETREAT": "emergency care", "BTG": "emergency access (break-glass)",
    "HRESCH": "health research", "HOPERAT": "running health services", "PATRQT": "because you asked",
    "HPAYMT": "payment", "PUBHLTH": "public health",
}
KINDS = {"patient": "you", "relatedPerson": "your carer or family member"}


def _uk() -> Any:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/London")
    except Exception:  # noqa: BLE001 (no time zone data on this machine: UTC, labelled)
        return None


UK = _uk()


def when(text: Any) -> str:
    """'7 December 2026 at 10:45' in UK time (UTC, labelled, where the machine has no time zone data)."""
    if not isinstance(text, str) or not text:
        return ""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return text
    if dt.tzinfo is None:
        return f"{dt.day} {dt:%B %Y} at {dt:%H:%M}"
    local = dt.astimezone(UK or UTC)
    return f"{local.day} {local:%B %Y} at {local:%H:%M}" + ("" if UK else " (UTC)")


def day(text: Any) -> str:
    if not isinstance(text, str) or not text:
        return ""
    try:
        d = date.fromisoformat(text[:10])
    except ValueError:
        return text
    return f"{d.day} {d:%B %Y}"


def what(interaction: str | None, rtype: str | None) -> str:
    verb = INTERACTIONS.get(interaction or "", "used")
    thing = THINGS.get(rtype or "", f"your record ({rtype})" if rtype else "your record")
    return f"{verb[:1].upper()}{verb[1:]} {thing}"


def why(purposes: list[str]) -> str:
    if "BTG" in purposes:
        return "Emergency access (break-glass): they had to give a reason, which is below"
    return ", ".join(PURPOSES.get(p, p) for p in purposes) or "not stated"


def outcome_words(diagnostics: str) -> str:
    """An OperationOutcome's diagnostics without FHIR paths and codes a person would not know."""
    text = diagnostics.strip()
    if not text:
        return "something in the form is not right. Please check it and try again."
    parts = []
    for piece in text.split("; "):
        # "QuestionnaireResponse.item[3].answer: must be ..." -> "must be ..."
        head, sep, rest = piece.partition(": ")
        parts.append(rest if sep and ("." in head or "[" in head) and " " not in head else piece)
    return "; ".join(parts)
