"""Policy settings: the policy's view of `service.config.Settings` (read once at start; a bad value stops the
process, naming it).

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

from dataclasses import dataclass

from service.config import Settings, get_settings

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
DIRECT_CARE = frozenset({"TREAT", "ETREAT", "BTG", "PATRQT"})
SECONDARY = frozenset({"HRESCH", "HOPERAT"})
KNOWN_PURPOSES = DIRECT_CARE | SECONDARY


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


def load(settings: Settings | None = None) -> PolicySettings:
    s = settings or get_settings()
    return PolicySettings(
        care_team_access=s.care_team_access,
        break_glass_roles=s.break_glass_roles,
        break_glass_minutes=s.break_glass_minutes,
        btg_overrides_objections=s.break_glass_overrides_objections,
        restricted_labels=s.restricted_labels,
        secondary_use_clients=s.secondary_use_clients,
    )
