"""`sharedcare audit verify`: is every sealed row as it was sealed, and is every seal the one that was made?

Against the key (not in the database) and the anchor file (out of its reach), it finds, even when someone
could write every table:
- an altered row (its digest no longer chains to its seal's root), and which one;
- a deleted row (a hole in a sealed range), reordered rows (digests out of place), an inserted row (below the
  newest seal, covered by none), a changed list of the people an access reached (`audit_also`);
- a seal altered or recomputed without the key (its MAC), removed (a gap in seal ids, or a seal the anchor
  file holds but the database does not: the log was truncated and the heads wound back), or replaced.
Rows newer than the newest seal are not sealed yet; it says how many.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from service.audit.rows import also_patients, digest
from service.audit.seal import MARGIN_US, chain, key_id, mac
from service.audit.tables import audit_also as X
from service.audit.tables import audit_log as A
from service.audit.tables import audit_seal as S


@dataclass
class Report:
    seals: int = 0
    rows: int = 0
    unsealed: int = 0
    anchored: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _anchors(path: Path, report: Report) -> dict[int, str]:
    if not path.exists():
        report.notes.append(f"no anchor file at {path}: a truncated log cannot be told from a short one")
        return {}
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            head = json.loads(line)
            out[int(head["seal"])] = str(head["mac"])
        except (ValueError, KeyError, TypeError):
            report.problems.append(f"anchor file line {n} is not a seal head")
    return out


def _check_seal(conn: Connection, seal: Any, key: bytes, prev_mac: str, report: Report) -> list[int]:
    """The seqs the seal covers; problems added to the report."""
    if seal.key_id != key_id(key):
        report.problems.append(f"seal {seal.id} was made with another key ({seal.key_id}): it cannot be checked "
                               "with this one")
        return []
    expected = mac(key, seal.id, seal.sealed_at, seal.ranges, seal.count, seal.root, seal.prev_mac)
    if not hmac.compare_digest(expected, seal.mac):
        report.problems.append(f"seal {seal.id} does not match its MAC: it was altered or recomputed without the key")
    if seal.prev_mac != prev_mac:
        report.problems.append(f"seal {seal.id} does not follow seal {seal.id - 1} (its previous MAC differs): a seal "
                               "was replaced or removed")
    ranges = [(int(lo), int(hi)) for lo, hi in json.loads(seal.ranges)]
    wanted = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    rows = {r.seq: r for lo, hi in ranges for r in conn.execute(select(A).where(A.c.seq.between(lo, hi)))}
    short = [seal.digests[i:i + 16] for i in range(0, len(seal.digests), 16)]
    digests = []
    for i, s in enumerate(wanted):
        row = rows.get(s)
        if row is None:
            report.problems.append(f"AuditEvent/{s} (sealed by seal {seal.id}) was deleted")
            continue
        d = digest(row)
        digests.append(d)
        if i >= len(short) or d[:16] != short[i]:
            report.problems.append(f"AuditEvent/{s} (sealed by seal {seal.id}) was altered or moved: it is not what "
                                   "was sealed")
    if len(wanted) != seal.count:
        report.problems.append(f"seal {seal.id} covers {len(wanted)} rows but says {seal.count}")
    if len(digests) == len(wanted) and chain(digests) != seal.root:
        report.problems.append(f"seal {seal.id}: its rows no longer chain to its root (altered or reordered)")
    for s in wanted:
        row = rows.get(s)
        if row is None:
            continue
        want = set(also_patients(row))
        have = {r.patient_id for r in conn.execute(select(X.c.patient_id).where(X.c.seq == s))}
        if want != have:
            report.problems.append(f"AuditEvent/{s}: the people it reached were changed (audit_also)")
    report.rows += len(rows)
    return wanted


def verify(conn: Connection, key: bytes, anchor_path: Path) -> Report:
    report = Report()
    anchors = _anchors(anchor_path, report)
    report.anchored = len(anchors)
    prev_mac, expect_id, covered, top = "", 1, set(), 0
    for seal in conn.execute(select(S).order_by(S.c.id)):
        if seal.id != expect_id:
            report.problems.append(f"seals {expect_id}..{seal.id - 1} are missing: sealed rows were removed")
        seqs = _check_seal(conn, seal, key, prev_mac, report)
        covered.update(seqs)
        top = max([top, *seqs])
        if seal.id in anchors and anchors[seal.id] != seal.mac:
            report.problems.append(f"seal {seal.id} is not the one the anchor file holds: it was replaced")
        prev_mac, expect_id = seal.mac, seal.id + 1
        report.seals += 1
    if anchors and max(anchors) >= expect_id:
        report.problems.append(f"the anchor file holds seal {max(anchors)} but the newest seal here is "
                               f"{expect_id - 1}: sealed rows and their seals were removed (truncated)")
    # A row below the newest seal that no seal covers is waiting for the next seal if it was too new for the newest
    # one (the sealer takes rows MARGIN old); any other was inserted, or its transaction committed after sealing.
    sealed_at = conn.execute(select(S.c.sealed_at).order_by(S.c.id.desc()).limit(1)).scalar() or 0
    waiting = 0
    for s, recorded in conn.execute(select(A.c.seq, A.c.recorded).where(A.c.seq <= top).order_by(A.c.seq)):
        if s in covered:
            continue
        if recorded > sealed_at - MARGIN_US:
            waiting += 1
            continue
        report.problems.append(f"AuditEvent/{s} is older than the newest seal but no seal covers it (inserted, "
                               "or its transaction committed after sealing)")
    report.unsealed = waiting + int(conn.execute(select(func.count()).select_from(A).where(A.c.seq > top)).scalar_one())
    return report
