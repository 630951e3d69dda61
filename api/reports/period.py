"""Report periods: one calendar month or day in the deployment's time zone, checked."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from api.problems import Problem

__all__ = ["Day", "Period", "daily_period", "monthly_period"]

_MONTH: Final = re.compile(r"(\d{4})-(\d{2})")
_DATE: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_EARLIEST_YEAR: Final = 2000


@dataclass(frozen=True, slots=True)
class Day:
    """One local calendar day of a period: its date and [start, end) in epoch seconds."""

    date: str
    start: int
    end: int  # clipped to the period's end (now, for the current day)


@dataclass(frozen=True, slots=True)
class Period:
    """A report period: [start, end) in epoch seconds, its local days and its time zone."""

    kind: str  # "monthly" | "daily"
    label: str  # "2026-11" or "2026-11-05"
    start: int
    end: int  # the period's end, or now if the period is still running
    days: tuple[Day, ...]
    time_zone: str
    utc_offset_s: int  # the zone's offset at the start (reports assume it is constant)

    @property
    def hours(self) -> int:
        """Hour slots in the period (a started hour counts)."""
        return -(-(self.end - self.start) // 3600)


def _epoch(day: dt.date, zone: ZoneInfo) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def _build(kind: str, label: str, first: dt.date, last: dt.date, zone: str, now: float) -> Period:
    tz = ZoneInfo(zone)
    start = _epoch(first, tz)
    if start > now:
        raise Problem(422, f"{'month' if kind == 'monthly' else 'date'}: {label} is in the future")
    end = min(_epoch(last + dt.timedelta(days=1), tz), int(now))
    days = []
    day = first
    while day <= last:
        begin = _epoch(day, tz)
        if begin >= end:
            break
        days.append(Day(day.isoformat(), begin, min(_epoch(day + dt.timedelta(days=1), tz), end)))
        day += dt.timedelta(days=1)
    offset = dt.datetime(first.year, first.month, first.day, tzinfo=tz).utcoffset()
    return Period(
        kind=kind,
        label=label,
        start=start,
        end=end,
        days=tuple(days),
        time_zone=zone,
        utc_offset_s=int(offset.total_seconds()) if offset is not None else 0,
    )


def monthly_period(month: str, zone: str, now: float) -> Period:
    """The month YYYY-MM in `zone` (up to now); 422 if malformed, too old or in the future."""
    found = _MONTH.fullmatch(month)
    if found is None:
        raise Problem(422, "month: must be YYYY-MM, e.g. 2026-11")
    year, number = int(found.group(1)), int(found.group(2))
    if not 1 <= number <= 12 or year < _EARLIEST_YEAR:
        raise Problem(422, f"month: must be a month of year {_EARLIEST_YEAR} or later, as YYYY-MM")
    first = dt.date(year, number, 1)
    if year >= dt.MAXYEAR:  # its end would not be a date; it is in the future anyway
        raise Problem(422, f"month: {month} is in the future")
    following = dt.date(year + number // 12, number % 12 + 1, 1)
    return _build("monthly", month, first, following - dt.timedelta(days=1), zone, now)


def daily_period(date: str, zone: str, now: float) -> Period:
    """The day YYYY-MM-DD in `zone` (up to now); 422 if malformed, too old or in the future."""
    if _DATE.fullmatch(date) is None:
        raise Problem(422, "date: must be YYYY-MM-DD, e.g. 2026-11-05")
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise Problem(422, "date: not a calendar date") from None
    if day.year < _EARLIEST_YEAR:
        raise Problem(422, f"date: must be in year {_EARLIEST_YEAR} or later")
    if day == dt.date.max:  # its end would not be a date; it is in the future anyway
        raise Problem(422, f"date: {date} is in the future")
    return _build("daily", date, day, day, zone, now)
