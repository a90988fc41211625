"""The scope guard's confinement as a search condition (service.search.filter.SearchFilter)."""

from __future__ import annotations

from typing import Any

from service.access.context import Principal
from service.auth.scopes import ScopeSet


def patient_filter(guard: Any, p: Principal, rtype: str) -> Any:
    from service.search.filter import SearchFilter

    scopes = p.scopes
    if scopes is None and p.subject == "sharedcare-internal":
        return None
    if not isinstance(scopes, ScopeSet):
        return SearchFilter.deny()
    granting = [s for perm in ("s", "r") for s in scopes.matching(perm, rtype)]
    if not granting:
        return SearchFilter.deny()
    if any(s.context != "patient" for s in granting):
        return None  # a user/ or system/ scope reaches beyond one patient (restrictions: per resource)
    if not p.patient:
        return SearchFilter.deny()
    return SearchFilter.only_patients(p.patient)
