"""`Last-Modified` is RFC 9110's IMF-fixdate in English whatever the process's locale: the same text as the
standard library's email formatter, and what a client's `If-Modified-Since` parser reads back."""

from __future__ import annotations

import locale
import random
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from service.clock import http_date, to_datetime


def test_http_date_is_the_imf_fixdate_of_the_second() -> None:
    rng = random.Random(7)
    samples = [0, 1, 999_999, 1_000_000, 951_782_400_000_000,  # 2000-02-29
               1_768_467_599_999_999, 1_768_467_600_000_000, 4_102_444_799_999_999]
    samples += [rng.randrange(0, 4_102_444_800_000_000) for _ in range(20_000)]
    for us in samples:
        text = http_date(us)
        assert text == format_datetime(to_datetime(us).replace(microsecond=0), usegmt=True), us
        assert parsedate_to_datetime(text) == datetime.fromtimestamp(us // 1_000_000, tz=UTC)


def test_http_date_ignores_the_locale() -> None:
    before = locale.setlocale(locale.LC_TIME)
    try:
        for name in ("de_DE.UTF-8", "fr_FR.UTF-8", "C.UTF-8"):
            try:
                locale.setlocale(locale.LC_TIME, name)
            except locale.Error:
                continue
            assert http_date(1_768_467_600_000_000) == "Thu, 15 Jan 2026 09:00:00 GMT"
    finally:
        locale.setlocale(locale.LC_TIME, before)
