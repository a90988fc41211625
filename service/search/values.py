"""Value handling shared by indexing and querying: text normalisation, FHIR dates as ranges, numbers."""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from service.search.tables import MAXLEN

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -(2 ** 62)
MAX_US = 2 ** 62
_US = timedelta(microseconds=1)

DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used for string search (NFKD, combining marks dropped, casefold)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:MAXLEN]


def cut(text: str) -> str:
    return text[:MAXLEN]


def prefix_upper(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (for a btree range)."""
    return prefix + "\U0010ffff"


def _us(dt: datetime) -> int:
    return (dt - EPOCH) // _US


def date_range(text: str) -> tuple[int, int] | None:
    """A FHIR date/dateTime/instant as the inclusive microsecond range its precision covers, or None."""
    m = DATE_RE.match(text.strip())
    if not m:
        return None
    year, month, day, hh, mi, ss, frac, tz = m.groups()
    try:
        tzinfo = UTC
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        y = int(year)
        if month is None:
            low = datetime(y, 1, 1, tzinfo=tzinfo)
            high = datetime(y + 1, 1, 1, tzinfo=tzinfo) if y < 9999 else datetime(9999, 12, 31, 23, 59, 59,
                                                                                  999999, tzinfo=tzinfo) + _US
        elif day is None:
            mo = int(month)
            low = datetime(y, mo, 1, tzinfo=tzinfo)
            high = low + timedelta(days=calendar.monthrange(y, mo)[1])
        elif hh is None:
            low = datetime(y, int(month), int(day), tzinfo=tzinfo)
            high = low + timedelta(days=1)
        else:
            micro = 0
            if frac:
                micro = int((frac + "000000")[:6])
            low = datetime(y, int(month), int(day), int(hh), int(mi), int(ss or 0), micro, tzinfo=tzinfo)
            if ss is None:
                step = timedelta(minutes=1)
            elif not frac:
                step = timedelta(seconds=1)
            else:
                step = timedelta(microseconds=10 ** max(0, 6 - len(frac)))
            high = low + step
    except (ValueError, OverflowError):
        return None
    return _us(low), _us(high) - 1


def period_range(period: dict) -> tuple[int, int] | None:
    start = period.get("start")
    end = period.get("end")
    lo = date_range(start) if isinstance(start, str) else None
    hi = date_range(end) if isinstance(end, str) else None
    if lo is None and hi is None:
        return None
    return (lo[0] if lo else MIN_US), (hi[1] if hi else MAX_US)


def number_range(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """(value, low, high) for a search number: the implicit range of its precision (100 -> [99.5, 100.5))."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite():
        raise ValueError(text)
    exp = value.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal(5) * Decimal(10) ** (exp - 1)
    return value, value - half, value + half
