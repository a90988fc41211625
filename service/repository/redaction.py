"""Redaction: what a caller gets of a resource they may see only in part.

A joint assessment (QuestionnaireResponse) records who gave each answer (the answer-author extension, with
the author's organisation). When the person's choices withhold their assessment from an organisation that
contributed to it, that organisation still sees the answers it gave (an objection never hides from an
organisation what it wrote) and nothing else: every other answer, and the narrative, are left out, and the
copy is labelled REDACTED (v3-ObservationValue) so no one mistakes it for the whole.
"""

from __future__ import annotations

import copy
from typing import Any

from service.policy.authorship import key_of

ANSWER_AUTHOR = "https://sharedcare.example.org/fhir/StructureDefinition/answer-author"
REDACTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "REDACTED",
            "display": "redacted"}


def _organisation_keys(item: dict[str, Any]) -> set[str] | None:
    """The keys of the organisation that gave this answer unit, or None when it carries no authorship."""
    for ext in item.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == ANSWER_AUTHOR:
            for sub in ext.get("extension") or ():
                if isinstance(sub, dict) and sub.get("url") == "organisation":
                    return key_of(sub.get("valueReference"))
            return set()
    return None


def _keep(items: Any, orgs: frozenset[str]) -> list[dict[str, Any]]:
    out = []
    for it in items or ():
        if not isinstance(it, dict):
            continue
        keys = _organisation_keys(it)
        if keys is not None:
            if keys & orgs:
                out.append(it)
            continue
        if it.get("item"):  # a container: keep what is left of it
            kids = _keep(it["item"], orgs)
            if kids:
                out.append({**it, "item": kids})
    return out


def only_written_by(resource: dict[str, Any], orgs: frozenset[str]) -> dict[str, Any]:
    """A copy of a joint assessment holding only the answers these organisations gave."""
    out = {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("item", "text")}
    items = _keep(resource.get("item"), orgs)
    if items:
        out["item"] = items
    meta = out.setdefault("meta", {})
    meta["security"] = [*(meta.get("security") or ()), REDACTED]
    return out
