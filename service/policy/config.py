"""Policy settings from the environment (read once at start; a bad value stops the process, naming it).

| variable | default | meaning |
|---|---|---|
| `SHAREDCARE_CARE_TEAM_ACCESS` | `member` | `member`: a CareTeam gives access to its listed members (a Practitioner, PractitionerRole or a whole Organization named as member); `organisation`: also to every member's organisation (`onBehalfOf`) and the team's managing organisation |
| `SHAREDCARE_BREAK_GLASS_ROLES` | `clinician` | service roles (or SDS job role codes) allowed to break glass |
| `SHAREDCARE_BREAK_GLASS_MINUTES` | `240` | how long a break-glass grant stays open |
| `SHAREDCARE_BREAK_GLASS_OVERRIDES_OBJECTIONS` | `1` | break-glass overrides a direct-care objection (never NOPAT, restricted labels or the National Data Opt-out) |
| `SHAREDCARE_RESTRICTED_LABELS` | `V` | v3-Confidentiality codes visible only to the authoring organisation (and the patient) |
| `SHAREDCARE_SECONDARY_USE_CLIENTS` | (none) | client ids that may state research/planning purposes (HRESCH, HOPERAT); users need the service role `secondary-use` |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from service.config import _bool

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
DIRECT_CARE = frozenset({"TREAT", "ETREAT", "BTG", "PATRQT"})
SECONDARY = frozenset({"HRESCH", "HOPERAT"})
KNOWN_PURPOSES = DIRECT_CARE | SECONDARY


def _words(name: str, default: str) -> frozenset[str]:
    raw = os.environ.get(name)
    return frozenset((default if raw is None else raw).replace(",", " ").split())


@dataclass(frozen=True)
class PolicySettings:
    care_team_access: str = "member"
    break_glass_roles: frozenset[str] = frozenset({"clinician"})
    break_glass_minutes: int = 240
    btg_overrides_objections: bool = True
    restricted_labels: frozenset[str] = frozenset({"V"})
    secondary_use_clients: frozenset[str] = frozenset()

    @property
    def organisation_care_teams(self) -> bool:
        return self.care_team_access == "organisation"


def load() -> PolicySettings:
    access = os.environ.get("SHAREDCARE_CARE_TEAM_ACCESS", "member").strip() or "member"
    if access not in ("member", "organisation"):
        raise SystemExit(f"configuration error: SHAREDCARE_CARE_TEAM_ACCESS must be member or organisation, "
                         f"got {access!r}")
    raw_minutes = os.environ.get("SHAREDCARE_BREAK_GLASS_MINUTES", "").strip()
    minutes = 240
    if raw_minutes:
        if not raw_minutes.isdigit() or not 1 <= int(raw_minutes) <= 24 * 60:
            raise SystemExit("configuration error: SHAREDCARE_BREAK_GLASS_MINUTES must be 1-1440 minutes, "
                             f"got {raw_minutes!r}")
        minutes = int(raw_minutes)
    return PolicySettings(
        care_team_access=access,
        break_glass_roles=_words("SHAREDCARE_BREAK_GLASS_ROLES", "clinician"),
        break_glass_minutes=minutes,
        btg_overrides_objections=_bool("SHAREDCARE_BREAK_GLASS_OVERRIDES_OBJECTIONS", True),
        restricted_labels=_words("SHAREDCARE_RESTRICTED_LABELS", "V"),
        secondary_use_clients=_words("SHAREDCARE_SECONDARY_USE_CLIENTS", ""),
    )
