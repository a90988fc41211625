"""NDJSON files of one export run, written to the database in chunks as they fill (never held whole).

One file per type at a time (a Group export, which pages through each member's compartment, has several open at
once); a type's file is closed and a new one opened after `per_file` resources. A chunk holds whole lines and is
written, with the job's lease check, once it reaches CHUNK bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.export import jobs

CHUNK = 1024 * 1024


@dataclass
class OpenFile:
    seq: int
    rtype: str
    count: int = 0
    size: int = 0
    chunks: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    patients: dict[str, None] = field(default_factory=dict)


class FileSet:
    def __init__(self, db: Any, job: jobs.Job, lease_seconds: float, per_file: int) -> None:
        self.db, self.job, self.lease, self.per_file = db, job, lease_seconds, per_file
        self.open: dict[str, OpenFile] = {}
        self.next_seq = 1
        self.exported = 0

    def progress(self, rtype: str) -> str:
        return f"{self.exported} resources exported; now {rtype}"

    def add(self, rtype: str, line: bytes) -> None:
        f = self.open.get(rtype)
        if f is None:
            f = self.open[rtype] = OpenFile(self.next_seq, rtype)
            self.next_seq += 1
        f.buffer += line
        f.buffer += b"\n"
        f.count += 1
        f.size += len(line) + 1
        self.exported += 1
        if len(f.buffer) >= CHUNK:
            jobs.write_chunk(self.db, self.job, self.lease, f.seq, f.chunks, bytes(f.buffer), self.progress(rtype),
                             self.exported)
            f.chunks += 1
            f.buffer.clear()

    def end_page(self, rtypes: Any, patients: Any) -> None:
        """A page's lines are in: the people whose data they hold (the repository's record of the page) go on the
        files that took them, and a file that has reached `per_file` resources is closed (so a file holds at most
        `per_file` plus one page)."""
        for rtype in rtypes:
            f = self.open.get(rtype)
            if f is None:
                continue
            for p in patients:
                f.patients.setdefault(p)
            if f.count >= self.per_file:
                self.close(rtype)

    def close(self, rtype: str) -> None:
        f = self.open.pop(rtype, None)
        if f is None:
            return
        last = (f.chunks, bytes(f.buffer)) if f.buffer else None
        jobs.close_file(self.db, self.job, self.lease, f.seq, rtype, f.count, f.size, list(f.patients),
                        self.progress(rtype), self.exported, last)

    def close_all(self) -> None:
        for rtype in list(self.open):
            self.close(rtype)
