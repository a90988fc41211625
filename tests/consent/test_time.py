"""C4: FHIR partial dates read in Europe/London; bounds cover their whole day, month or year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consent import Actor, Request
from consent.time import FhirTimeError, Interval, instant, parse, period


def z(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(("text", "start", "end", "precision"), [
    ("2024", z(2024, 1, 1), z(2025, 1, 1), "year"),
    ("2024-03", z(2024, 3, 1), z(2024, 3, 31, 23), "month"),  # April starts in summer time
    ("2018-06-30", z(2018, 6, 29, 23), z(2018, 6, 30, 23), "day"),  # London day ends 22:59:59Z
    ("2029-01-01", z(2029, 1, 1), z(2029, 1, 2), "day"),
    ("2024-03-31", z(2024, 3, 31), z(2024, 3, 31, 23), "day"),  # 23-hour day: clocks go forward
    ("2024-10-27", z(2024, 10, 26, 23), z(2024, 10, 28), "day"),  # 25-hour day: clocks go back
    ("2016-06-23T17:02:33+10:00", z(2016, 6, 23, 7, 2, 33), z(2016, 6, 23, 7, 2, 34), "second"),
    ("2024-01-01T09:00:00.5Z", z(2024, 1, 1, 9, 0, 0) + timedelta(milliseconds=500),
     z(2024, 1, 1, 9, 0, 0) + timedelta(milliseconds=600), "fraction"),
    ("2024-07-01T12:00:00", z(2024, 7, 1, 11), z(2024, 7, 1, 11, 0, 1), "second"),  # no offset: London
], ids=lambda v: v if isinstance(v, str) else None)
def test_bounds(text: str, start: datetime, end: datetime, precision: str) -> None:
    t = parse(text)
    assert (t.start, t.end, t.precision) == (start, end, precision)


def test_offsets_are_recorded() -> None:
    assert parse("2024-07-01T12:00:00Z").has_offset
    assert not parse("2024-07-01T12:00:00").has_offset
    assert not parse("2024-07-01").has_time


@pytest.mark.parametrize("text", ["", "2024-13", "2024-02-30", "yesterday", "2024-01-01T25:00:00Z",
                                  "2024-01-01T10:00:00+15:00", "24-01-01", "2024-1-1"])
def test_invalid_values(text: str) -> None:
    with pytest.raises(FhirTimeError):
        parse(text)


def test_non_string_is_invalid() -> None:
    with pytest.raises(FhirTimeError):
        parse(20240101)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bounds", "t", "inside"), [
    (("2019-11-01", "2029-01-01"), z(2029, 1, 1, 12), True),  # case 21: a date-only end includes the day
    (("2019-11-01", "2029-01-01"), z(2029, 1, 2), False),
    ((None, "2024"), z(2024, 12, 31, 23, 30), True),  # case 23: year precision
    ((None, "2024"), z(2025, 1, 1), False),
    (("2018-01-01", "2018-06-30"), z(2018, 6, 30, 22, 59, 59), True),  # case 24
    (("2018-01-01", "2018-06-30"), z(2018, 6, 30, 23, 30), False),
    (("2018-01-01", None), z(2017, 12, 31, 23, 59, 59), False),
    (("2018-01-01", None), z(2018, 1, 1), True),
    (("2016-06-23T17:02:33+10:00", "2016-06-23T17:32:33+10:00"), z(2016, 6, 23, 7, 32, 33, 999999), True),
    (("2016-06-23T17:02:33+10:00", "2016-06-23T17:32:33+10:00"), z(2016, 6, 23, 7, 32, 34), False),
])
def test_period_contains(bounds: tuple[str | None, str | None], t: datetime, inside: bool) -> None:
    assert period(*bounds).contains(t) is inside


def test_open_interval_contains_everything() -> None:
    assert Interval().contains(z(1900, 1, 1))


def test_date_only_datetime_orders_as_start_of_london_day() -> None:
    assert instant("2024-01-01") == z(2024, 1, 1)
    assert instant("2024-07-01") == z(2024, 6, 30, 23)
    assert instant("2023-01-10") < instant("2024-03-01")
    assert instant("2024-01-01T09:00:00Z") == instant("2024-01-01T10:00:00+01:00")


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Request(patient="Patient/p1", actor=Actor(kind="practitioner"), now=datetime(2025, 1, 1))
