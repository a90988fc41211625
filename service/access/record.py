"""The per-request record: what one request touched and what the access policy decided about it.

The repository and the policy fill it in; the audit consumes it (the patients concerned, the resources read
or written, the basis of every decision, break-glass flags). The request context stays frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_NOTES = 20
MAX_ENTITIES = 50


@dataclass
class RequestRecord:
    interaction: str = "unknown"
    patients: dict[str, None] = field(default_factory=dict)  # owners of what was decided on, in order
    entities: dict[str, None] = field(default_factory=dict)  # "Type/id/_history/v" read or written
    notes: dict[str, None] = field(default_factory=dict)  # the basis of each decision, for the audit
    # break-glass
    btg_request: bool = False  # the request stated X-Purpose-Of-Use: BTG (with a reason)
    flagged: set[str] = field(default_factory=set)  # patients whose access depended on break-glass
    candidates: set[str] = field(default_factory=set)  # searches: granted/BTG patients to check afterwards
    dependent: set[str] = field(default_factory=set)  # related, but a consent was overridden by BTG
    grants: dict[str, str] = field(default_factory=dict)  # patient -> open grant id
    btg_reason: str | None = None  # the grant's reason, when an access ran under break-glass
    # searches: patients some of whose records the caller may not see because of their choices -> basis
    suppressed: dict[str, str] = field(default_factory=dict)

    def restart(self) -> None:
        """Forget what an attempt touched (a read retried on a fresh connection decides again)."""
        self.patients.clear()
        self.entities.clear()
        self.suppressed.clear()

    def note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < MAX_NOTES:
            self.notes[text] = None

    def touch(self, patients: tuple[str, ...] | list[str] | set[str], rtype: str | None = None) -> None:
        """The patients whose data this request reached. AuditEvents record accesses to a person's data; reading
        them is the audit trail's business, not another access to the person's record."""
        if rtype == "AuditEvent":
            return
        for pid in patients:
            self.patients.setdefault(pid)

    def saw(self, ref: str) -> None:
        if len(self.entities) < MAX_ENTITIES:
            self.entities.setdefault(ref)

    @property
    def break_glass(self) -> bool:
        return bool(self.btg_reason)
