"""Time for the store: integer microseconds (UTC) and their FHIR and HTTP renderings."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import format_datetime


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


def fhir_instant(us: int) -> str:
    secs, micros = divmod(us, 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{micros:06d}+00:00"


def http_date(us: int) -> str:
    return format_datetime(to_datetime(us).replace(microsecond=0), usegmt=True)


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000)
