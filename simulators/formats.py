"""Readers of recorded sensor files for replay: rows to readings in catalog fields and units.

Each reader takes the file's lines and yields, per data row, `Record`s (one per device in the
row) or a `Skipped` with the reason. Missing-value codes become gaps: the field is left out of
the reading (never a zero), and a reading with no field left is skipped.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Final

import numpy as np

from pantau.timestamps import parse_time
from processors.indicators.ispu import ISPU_BREAKPOINTS, ISPU_INDEX_POINTS

__all__ = [
    "FORMATS",
    "Record",
    "ReplayFormat",
    "Skipped",
    "parse_ea",
    "parse_ispu",
    "parse_ispu_2020",
    "parse_pintu_air",
    "parse_prsa",
    "parse_uci",
    "slug",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One reading of one series of the file (a station, a gauge)."""

    stream: str
    line: int
    ts: float  # UTC epoch seconds of the observation
    fields: dict[str, float]
    gaps: tuple[str, ...] = ()  # mapped fields left out because the file had no value


@dataclass(frozen=True, slots=True)
class Skipped:
    """A reading (or whole row) that cannot be sent, and why."""

    stream: str
    line: int
    reason: str  # "all_missing", "bad_timestamp", "bad_value", "short_row"
    detail: str = ""
    gaps: tuple[str, ...] = ()


Item = Record | Skipped
Parser = Callable[[Iterable[str], str, float], Iterator[Item]]


@dataclass(frozen=True, slots=True)
class ReplayFormat:
    """A file format: what it holds and how to read it."""

    name: str
    kind: str | None  # the catalog kind it maps to; None: not replayable (see `refusal`)
    utc_offset_h: float  # the time zone of the file's timestamps
    parse: Parser
    summary: str
    refusal: str = ""
    several_devices: bool = False  # one file holds several devices (one stream each)


class _BadValueError(ValueError):
    """A cell that is neither a number nor a missing-value code."""


def slug(text: str) -> str:
    """A topic segment from a free-text name: lowercase, [a-z0-9-], at most 64 characters."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:64] or "unknown"


@dataclass(frozen=True, slots=True)
class _Missing:
    """A format's missing-value codes: texts (e.g. "NA", "") and numbers (e.g. -200)."""

    texts: frozenset[str] = frozenset({"", "NA", "NaN", "nan", "null"})
    numbers: frozenset[float] = frozenset()


def _number(cell: str, missing: _Missing) -> float | None:
    text = cell.strip()
    if text in missing.texts:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _BadValueError(f"not a number: {cell!r}") from None
    if not math.isfinite(value) or value in missing.numbers:
        return None
    return value


def _epoch(moment: datetime, utc_offset_h: float) -> float:
    return moment.replace(tzinfo=timezone(timedelta(hours=utc_offset_h))).timestamp()


def _rows(lines: Iterable[str], delimiter: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """The header, then each non-blank row, with 1-based line numbers; `,` or `;` sniffed."""
    iterator = iter(lines)
    header = next(iterator, None)
    if header is None:
        return
    header = header.lstrip("\ufeff")
    if delimiter is None:
        delimiter = ";" if header.count(";") > header.count(",") else ","
    lines_again = itertools.chain([header], iterator)
    reader = csv.reader(lines_again, delimiter=delimiter, skipinitialspace=True)
    columns = [c.strip() for c in next(reader)]
    yield 1, columns
    for cells in reader:
        if any(c.strip() for c in cells):
            yield reader.line_num, [c.strip() for c in cells]


def _readings(
    stream: str,
    line: int,
    ts: float,
    cells: dict[str, str],
    mapping: Sequence[tuple[str, str, float]],
    missing: _Missing,
) -> Item:
    """One reading from (column, field, factor) mappings; gaps for missing values."""
    fields: dict[str, float] = {}
    gaps: list[str] = []
    for column, name, factor in mapping:
        try:
            value = _number(cells.get(column, ""), missing)
        except _BadValueError as exc:
            return Skipped(stream, line, "bad_value", f"{column}: {exc}")
        if value is None:
            gaps.append(name)
        else:
            # Rounded: a unit factor must add no float noise (2.6 mg/m3 is 2600 ug/m3 exactly).
            fields[name] = round(value * factor, 9)
    if not fields:
        return Skipped(stream, line, "all_missing", gaps=tuple(gaps))
    return Record(stream, line, ts, fields, tuple(gaps))


def _header_map(columns: list[str], needed: Iterable[str], what: str) -> dict[str, int]:
    index = {c: i for i, c in enumerate(columns)}
    absent = [c for c in needed if c not in index]
    if absent:
        raise ValueError(f"not a {what} file: missing column(s) {', '.join(absent)}")
    return index


_UCI_MAP: Final = (
    ("CO_GT", "co", 1000.0),  # mg/m3 -> ug/m3
    ("NO2_GT", "no2", 1.0),
    ("NMHC_GT", "hc", 1.0),  # non-methane hydrocarbons, ug/m3
    ("T", "temperature", 1.0),
    ("RH", "humidity", 1.0),
)
_UCI_MISSING: Final = _Missing(numbers=frozenset({-200.0}))


def parse_uci(lines: Iterable[str], source: str, utc_offset_h: float) -> Iterator[Item]:
    """UCI Air Quality: Date D/MM/YYYY, Time H:MM:SS, CO_GT in mg/m3, -200 = missing."""
    rows = _rows(lines)
    _, columns = next(rows, (0, []))
    index = _header_map(columns, ("Date", "Time", *(c for c, _, _ in _UCI_MAP)), "UCI")
    stream = "uci"
    for line, cells in rows:
        if len(cells) < len(columns):
            yield Skipped(stream, line, "short_row")
            continue
        try:
            day, month, year = (int(p) for p in cells[index["Date"]].split("/"))
            hour, minute, second = (
                int(p) for p in cells[index["Time"]].replace(".", ":").split(":")
            )
            ts = _epoch(datetime(year, month, day, hour, minute, second), utc_offset_h)
        except ValueError as exc:
            yield Skipped(stream, line, "bad_timestamp", str(exc))
            continue
        named = {c: cells[i] for c, i in index.items()}
        yield _readings(stream, line, ts, named, _UCI_MAP, _UCI_MISSING)


_PRSA_MAP: Final = (
    ("PM2.5", "pm25", 1.0),
    ("PM10", "pm10", 1.0),
    ("SO2", "so2", 1.0),
    ("NO2", "no2", 1.0),
    ("CO", "co", 1.0),  # already ug/m3 in this data set
    ("O3", "o3", 1.0),
    ("TEMP", "temperature", 1.0),
)
_NA: Final = _Missing()
_PRSA_TIME: Final = ("year", "month", "day", "hour")


def parse_prsa(lines: Iterable[str], source: str, utc_offset_h: float) -> Iterator[Item]:
    """Beijing PRSA: year, month, day, hour (Beijing time), all pollutants ug/m3, NA = missing."""
    rows = _rows(lines)
    _, columns = next(rows, (0, []))
    needed = (*_PRSA_TIME, *(c for c, _, _ in _PRSA_MAP))
    index = _header_map(columns, needed, "PRSA")
    station = index.get("station")
    for line, cells in rows:
        stream = slug(cells[station]) if station is not None and station < len(cells) else "prsa"
        if len(cells) < len(columns):
            yield Skipped(stream, line, "short_row")
            continue
        try:
            year, month, day, hour = (
                int(cells[index[c]]) for c in ("year", "month", "day", "hour")
            )
            ts = _epoch(datetime(year, month, day, hour), utc_offset_h)
        except ValueError as exc:
            yield Skipped(stream, line, "bad_timestamp", str(exc))
            continue
        named = {c: cells[i] for c, i in index.items()}
        yield _readings(stream, line, ts, named, _PRSA_MAP, _NA)


def parse_pintu_air(lines: Iterable[str], source: str, utc_offset_h: float) -> Iterator[Item]:
    """Jakarta water gates: Tanggal (WIB) and one `<gauge> (air)` column in cm per gauge."""
    rows = _rows(lines)
    _, columns = next(rows, (0, []))
    index = _header_map(columns, ("Tanggal",), "pintu air")
    gauges = [
        (i, c, slug(c.removesuffix("(air)"))) for i, c in enumerate(columns) if c.endswith("(air)")
    ]
    if not gauges:
        raise ValueError("not a pintu air file: no '<gauge> (air)' level columns")
    for line, cells in rows:
        if len(cells) < len(columns):
            yield Skipped("pintu_air", line, "short_row")
            continue
        try:
            ts = parse_time(cells[index["Tanggal"]], epoch=False, naive_utc_offset_h=utc_offset_h)
        except ValueError as exc:
            for _, _, stream in gauges:
                yield Skipped(stream, line, "bad_timestamp", str(exc))
            continue
        for i, column, stream in gauges:
            yield _readings(stream, line, ts, {column: cells[i]}, ((column, "level_cm", 1.0),), _NA)


def parse_ea(lines: Iterable[str], source: str, utc_offset_h: float) -> Iterator[Item]:
    """UK Environment Agency level CSV: dateTime (UTC), value in metres above the gauge datum."""
    rows = _rows(lines)
    _, columns = next(rows, (0, []))
    index = _header_map(columns, ("dateTime", "value"), "Environment Agency")
    # The file name carries the station (Hebden-Bridge-level-15min-Qualified.csv).
    stream = slug(re.split(r"-level", source, maxsplit=1)[0]) if source else "ea"
    for line, cells in rows:
        if len(cells) < len(columns):
            yield Skipped(stream, line, "short_row")
            continue
        try:
            # An explicit offset in the file wins over the format's default.
            ts = parse_time(cells[index["dateTime"]], epoch=False, naive_utc_offset_h=utc_offset_h)
        except ValueError as exc:
            yield Skipped(stream, line, "bad_timestamp", str(exc))
            continue
        cell = {"value": cells[index["value"]]}
        yield _readings(stream, line, ts, cell, (("value", "level_cm", 100.0),), _NA)


_ISPU_POLLUTANTS: Final = ("pm25", "pm10", "so2", "co", "o3", "no2")


def parse_ispu(lines: Iterable[str], source: str, utc_offset_h: float) -> Iterator[Item]:
    """Jakarta ISPU: daily sub-index values (0-500, not concentrations) per pollutant."""
    # Per-station files use `,` and M/D/YYYY; the worst-station file `;` and DD/MM/YYYY.
    # The fields carry index values, so they must never go to `air_quality`.
    rows = _rows(lines)
    _, columns = next(rows, (0, []))
    index = _header_map(columns, ("tanggal", "stasiun"), "ISPU")
    day_first = ";" in "".join(columns) or "pm25" in index  # the 2022+ export
    mapping = tuple((p, p, 1.0) for p in _ISPU_POLLUTANTS if p in index)
    for line, cells in rows:
        station = cells[index["stasiun"]] if index["stasiun"] < len(cells) else ""
        stream = slug(station.split("(")[0]) if station else "ispu"
        if len(cells) < len(columns):
            yield Skipped(stream, line, "short_row")
            continue
        try:
            first, second, year = (int(p) for p in cells[index["tanggal"]].split("/"))
            day, month = (first, second) if day_first else (second, first)
            ts = _epoch(datetime(year, month, day), utc_offset_h)
        except ValueError as exc:
            yield Skipped(stream, line, "bad_timestamp", str(exc))
            continue
        named = {c: cells[i] for c, i in index.items()}
        yield _readings(stream, line, ts, named, mapping, _NA)


def parse_ispu_2020(lines: Iterable[str], source: str, utc_offset_h: float) -> Iterator[Item]:
    """Jakarta ISPU 2022+ export: sub-indices turned back into daily mean concentrations.

    From September 2020 the indices follow P.14/2020, whose table is continuous and
    piecewise linear, so each sub-index maps back to one 24-hour mean concentration (ug/m3).
    The values were rounded to integers, so the concentration is exact only to the table's
    slope (e.g. +-0.2 ug/m3 of PM2.5 between ISPU 50 and 100). A sub-index at the table's top
    (500) is a lower bound. Older files (1997 table) are refused: see `ispu`.
    """
    points = np.asarray(ISPU_INDEX_POINTS, dtype=np.float64)
    for item in parse_ispu(lines, source, utc_offset_h):
        if not isinstance(item, Record):
            yield item
            continue
        if item.ts < _P14_2020_IN_FORCE:
            yield Skipped(
                item.stream,
                item.line,
                "before_p14_2020",
                "index on the 1997 table; not invertible here",
            )
            continue
        fields = {
            name: round(float(np.interp(value, points, ISPU_BREAKPOINTS[name])), 3)
            for name, value in item.fields.items()
        }
        yield Record(item.stream, item.line, item.ts, fields, item.gaps)


# P.14/MENLHK/SETJEN/KUM.1/7/2020 indices are published from September 2020 on (data README).
_P14_2020_IN_FORCE: Final = 1598893200.0  # 2020-09-01T00:00:00+07:00


_ISPU_REFUSAL: Final = (
    "ISPU files hold daily ISPU sub-index values (a 0-500 scale per pollutant), not "
    "concentrations. Pantau's air_quality measurement stores concentrations in ug/m3 and "
    "computes ISPU itself, so publishing index values as readings would corrupt it; and "
    "inverting the index is not sound here (the 2010-2020 values follow the 1997 breakpoints, "
    "with integer rounding and daily averaging). Nothing was replayed. Use "
    "simulators.formats.parse_ispu to compare Pantau's computed ISPU with these files instead; "
    "the 2022+ export (P.14/2020) can be replayed with --format ispu2020."
)

FORMATS: Final = MappingProxyType(
    {
        "uci": ReplayFormat(
            "uci",
            "air_quality",
            1.0,
            parse_uci,
            "UCI Air Quality (Italian city, local time taken as CET, UTC+1; no DST in the series)",
        ),
        "prsa": ReplayFormat(
            "prsa", "air_quality", 8.0, parse_prsa, "Beijing PRSA multi-site (UTC+8)"
        ),
        "pintu_air": ReplayFormat(
            "pintu_air",
            "water_level",
            7.0,
            parse_pintu_air,
            "Jakarta pintu air hourly levels (WIB, UTC+7), one device per gauge",
            several_devices=True,
        ),
        "ea": ReplayFormat(
            "ea", "water_level", 0.0, parse_ea, "UK Environment Agency 15-min level (UTC)"
        ),
        "ispu": ReplayFormat(
            "ispu", None, 7.0, parse_ispu, "Jakarta daily ISPU sub-indices", _ISPU_REFUSAL
        ),
        "ispu2020": ReplayFormat(
            "ispu2020",
            "air_quality",
            7.0,
            parse_ispu_2020,
            "Jakarta daily ISPU (2022+ export, P.14/2020) inverted to 24-hour mean ug/m3",
            several_devices=True,
        ),
    }
)
