"""Time for the store: integer microseconds (UTC) and their FHIR and HTTP renderings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def fhir_instant(us: int) -> str:
    secs, micros = divmod(us, 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{micros:06d}+00:00"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(us: int) -> str:
    """RFC 9110's IMF-fixdate (`Last-Modified`), in English whatever the locale: what
    `email.utils.format_datetime(..., usegmt=True)` gives, at half its cost (it is on every read's answer)."""
    t = time.gmtime(us // 1_000_000)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_datetime(dt: datetime) -> int:
    """Exact microseconds (no float rounding: `_since` equal to a stored lastUpdated must include it)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1)
