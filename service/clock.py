"""Time for the store: integer microseconds (UTC) and their FHIR and HTTP renderings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def fhir_instant(us: int) -> str:
    secs, micros = divmod(us, 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{micros:06d}+00:00"


def http_date(us: int) -> str:
    return format_datetime(to_datetime(us).replace(microsecond=0), usegmt=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_datetime(dt: datetime) -> int:
    """Exact microseconds (no float rounding: `_since` equal to a stored lastUpdated must include it)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1)
