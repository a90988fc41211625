"""FHIR date/dateTime values as instants and intervals, read in Europe/London (rule C4).

A value covers every instant of its precision: ``"2024"`` is the whole of 2024, ``"2018-06-30"`` the
whole London day (which ends at 22:59:59Z in summer time), ``"2016-06-23T17:32:33+10:00"`` that second.
So a bound's *start* is the first instant it covers and its *end* is the first instant after it
(exclusive), and a Period ``start..end`` contains ``t`` when ``start.start <= t < end.end``.
Date-times must carry an offset; one without (invalid FHIR) is read as London wall-clock time.
A date-only ``Consent.dateTime`` orders as the start of its day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

_VALUE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_FAR_END = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class FhirTimeError(ValueError):
    """A value that is not a FHIR date, dateTime or instant."""


@dataclass(frozen=True)
class FhirTime:
    """A parsed value: the instants ``[start, end)`` it covers."""

    text: str
    start: datetime
    end: datetime
    precision: str  # year | month | day | minute | second | fraction
    has_time: bool
    has_offset: bool
    has_seconds: bool


def _add_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _london(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=LONDON)


def parse(text: str) -> FhirTime:
    """Parse a FHIR date, dateTime or instant; raise `FhirTimeError` if it is none of them."""
    if not isinstance(text, str):
        raise FhirTimeError(f"not a string: {text!r}")
    m = _VALUE.match(text.strip())
    if m is None:
        raise FhirTimeError(f"not a FHIR date or dateTime: {text!r}")
    g = m.groupdict()
    try:
        year = int(g["y"])
        if g["mo"] is None:
            start = _london(year, 1, 1)
            end = _london(year + 1, 1, 1) if year < 9999 else _FAR_END
            return FhirTime(text, start, end, "year", False, False, False)
        month = int(g["mo"])
        if g["d"] is None:
            start = _london(year, month, 1)
            ny, nm = _add_month(year, month)
            end = _london(ny, nm, 1) if ny <= 9999 else _FAR_END
            return FhirTime(text, start, end, "month", False, False, False)
        day = int(g["d"])
        if g["h"] is None:
            start = _london(year, month, day)
            nxt = start.date() + timedelta(days=1) if start.date().toordinal() < 3652059 else None
            end = _london(nxt.year, nxt.month, nxt.day) if nxt else _FAR_END
            return FhirTime(text, start, end, "day", False, False, False)
        tzinfo = LONDON if g["tz"] is None else _offset(g["tz"])
        frac = g["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        start = datetime(year, month, day, int(g["h"]), int(g["mi"]), int(g["s"] or 0), micro, tzinfo=tzinfo)
        if g["s"] is None:
            step, precision = timedelta(minutes=1), "minute"
        elif frac:
            step, precision = timedelta(microseconds=max(1, 10 ** (6 - min(len(frac), 6)))), "fraction"
        else:
            step, precision = timedelta(seconds=1), "second"
        end = start + step if start < _FAR_END - step else _FAR_END
        return FhirTime(text, start, end, precision, True, g["tz"] is not None, g["s"] is not None)
    except (ValueError, OverflowError) as exc:
        raise FhirTimeError(f"not a valid date or time: {text!r} ({exc})") from None


def _offset(tz: str) -> timezone:
    if tz == "Z":
        return UTC
    sign = 1 if tz[0] == "+" else -1
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(f"bad offset {tz}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def instant(text: str) -> datetime:
    """The first instant a value covers: how a ``dateTime`` orders (C4) and a resource date compares."""
    return parse(text).start


@dataclass(frozen=True)
class Interval:
    """``[start, end)``; ``None`` = unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, t: datetime) -> bool:
        return (self.start is None or self.start <= t) and (self.end is None or t < self.end)

    def describe(self) -> str:
        a = self.start.isoformat() if self.start else ""
        b = self.end.isoformat() if self.end else ""
        return f"[{a}, {b})"


def period(start: str | None, end: str | None) -> Interval:
    """A FHIR Period: from the first instant of ``start`` to the last instant of ``end`` (inclusive)."""
    return Interval(parse(start).start if start else None, parse(end).end if end else None)


def require_aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {t!r}")
    return t
