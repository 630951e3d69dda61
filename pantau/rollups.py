"""Retention and downsampling on InfluxDB 1.x: retention policies, continuous queries, backfill.

Raw points stay in the database's default retention policy `autogen`; hourly and daily rollups
go to `rollup_1h` and `rollup_1d` under the same measurement names, with the fields InfluxDB
gives wildcard aggregates: `mean_<field>`, `min_<field>`, `max_<field>`, `last_<field>` (mean
skips string and boolean fields; min/max keep booleans; last keeps strings). All tags are kept.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pantau.influx import InfluxClient, quote_identifier
from pantau.influx_async import AsyncInflux
from pantau.settings import Settings

__all__ = [
    "RAW_MAX_SPAN_S",
    "RAW_RP",
    "ROLLUPS",
    "Rollup",
    "Source",
    "backfill",
    "backfill_statements",
    "cq_statement",
    "ensure_rollups",
    "ensure_rollups_async",
    "pick_source",
    "plan_rollups",
    "rollup_select",
    "rollup_statements",
    "split_range",
]

log = logging.getLogger(__name__)

RAW_RP: Final = "autogen"
# Ranges up to this long are read from raw points: a two-day chart wants the detail.
RAW_MAX_SPAN_S: Final = 2 * 86400.0

_RAW_MEASUREMENTS: Final = ("air_quality", "water_level", "streetlight", "indicator")
# Hourly area snapshots are already hourly: only a daily rollup adds anything.
_AREA_MEASUREMENT: Final = "area_hourly"


class Source(StrEnum):
    """Where a history answer comes from."""

    RAW = "raw"
    ROLLUP_1H = "rollup_1h"
    ROLLUP_1D = "rollup_1d"


@dataclass(frozen=True, slots=True)
class Rollup:
    """One rollup level: its retention policy, resolution and the measurements it covers."""

    source: Source
    every: str  # an InfluxQL duration literal
    seconds: int
    resample_for: str  # how far back each run recomputes, for readings that arrive late
    measurements: tuple[str, ...]
    backfill_chunk_s: int

    @property
    def rp(self) -> str:
        """The retention policy's name."""
        return self.source.value

    def cq_name(self, measurement: str) -> str:
        """The continuous query for one measurement."""
        return f"cq_{self.every}_{measurement}"

    def retention(self, settings: Settings) -> str:
        """The retention policy's duration from settings (`INF` or e.g. `90d`)."""
        hist = settings.history
        return hist.hourly_retention if self.source is Source.ROLLUP_1H else hist.daily_retention


ROLLUPS: Final = (
    Rollup(Source.ROLLUP_1H, "1h", 3600, "2h", _RAW_MEASUREMENTS, 7 * 86400),
    Rollup(
        Source.ROLLUP_1D, "1d", 86400, "2d", (*_RAW_MEASUREMENTS, _AREA_MEASUREMENT), 92 * 86400
    ),
)
_BY_SOURCE: Final = {r.source: r for r in ROLLUPS}

_UNIT_S: Final = {"h": 3600, "d": 86400, "w": 604800}
_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_GO_UNIT_S: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


def resolution_s(source: Source) -> int:
    """Seconds per point of a rollup (0 for raw)."""
    rollup = _BY_SOURCE.get(source)
    return 0 if rollup is None else rollup.seconds


def pick_source(span_s: float, interval_s: int) -> Source:
    """Raw for short ranges, else the coarsest rollup whose resolution divides the interval.

    A rollup serves an interval only if the interval is a whole number of its points, so each
    interval of the answer covers whole rollup points (and the epoch-aligned buckets match).
    """
    if span_s <= RAW_MAX_SPAN_S:
        return Source.RAW
    for rollup in sorted(ROLLUPS, key=lambda r: r.seconds, reverse=True):
        if interval_s >= rollup.seconds and interval_s % rollup.seconds == 0:
            return rollup.source
    return Source.RAW


def split_range(
    source: Source, start_s: float, end_s: float, interval_s: int, now_s: float
) -> list[tuple[Source, float, float]]:
    """The sub-ranges a history answer reads from each source, in time order.

    A rollup serves the whole intervals in the middle. Raw points serve a partial first interval
    (a rollup point cannot be cut at `start`) and the newest intervals, which are not rolled up
    yet: a CQ runs once its hour or day is over and recomputes the one before for late readings.
    """
    if source is Source.RAW:
        return [(Source.RAW, start_s, end_s)]
    head = min(end_s, math.ceil(start_s / interval_s) * interval_s)
    lag = now_s - resolution_s(source)
    tail = min(end_s, max(head, math.floor(lag / interval_s) * interval_s))
    if tail <= head:
        return [(Source.RAW, start_s, end_s)]
    parts = [(Source.RAW, start_s, head), (source, head, tail), (Source.RAW, tail, end_s)]
    return [(s, lo, hi) for s, lo, hi in parts if hi > lo]


def _duration_s(text: str) -> float:
    """Seconds of a settings duration (`INF` is 0, as InfluxDB shows it)."""
    if text == "INF":
        return 0.0
    return float(int(text[:-1]) * _UNIT_S[text[-1]])


def _go_duration_s(text: str) -> float:
    """Seconds of a Go duration as SHOW RETENTION POLICIES prints it (`2160h0m0s`, `0s`)."""
    return sum(float(n) * _GO_UNIT_S[u] for n, u in _GO_DURATION.findall(text))


def rollup_select(settings: Settings, rollup: Rollup, measurement: str, where: str = "") -> str:
    """The SELECT ... INTO a continuous query and a backfill share."""
    db = quote_identifier(settings.influx.db)
    where_clause = f" WHERE {where}" if where else ""
    return (
        "SELECT mean(*), min(*), max(*), last(*) "
        f"INTO {db}.{quote_identifier(rollup.rp)}.:MEASUREMENT "
        f"FROM {db}.{quote_identifier(RAW_RP)}.{quote_identifier(measurement)}"
        f"{where_clause} GROUP BY time({rollup.every}), *"
    )


def cq_statement(settings: Settings, rollup: Rollup, measurement: str) -> str:
    """The CREATE CONTINUOUS QUERY that keeps one measurement's rollup current."""
    return (
        f"CREATE CONTINUOUS QUERY {quote_identifier(rollup.cq_name(measurement))} "
        f"ON {quote_identifier(settings.influx.db)} RESAMPLE FOR {rollup.resample_for} "
        f"BEGIN {rollup_select(settings, rollup, measurement)} END"
    )


def _rp_statement(settings: Settings, name: str, duration: str, *, create: bool) -> str:
    verb = "CREATE" if create else "ALTER"
    tail = " REPLICATION 1" if create else ""
    db = quote_identifier(settings.influx.db)
    return f"{verb} RETENTION POLICY {quote_identifier(name)} ON {db} DURATION {duration}{tail}"


def rollup_statements(settings: Settings) -> list[str]:
    """Every statement that sets retention and rollups up on an empty database, in order."""
    out = [_rp_statement(settings, RAW_RP, settings.history.raw_retention, create=False)]
    for rollup in ROLLUPS:
        out.append(_rp_statement(settings, rollup.rp, rollup.retention(settings), create=True))
    for rollup in ROLLUPS:
        out.extend(cq_statement(settings, rollup, m) for m in rollup.measurements)
    return out


def _normalise(statement: str) -> str:
    # SHOW CONTINUOUS QUERIES prints identifiers unquoted unless they need quotes.
    return " ".join(statement.replace('"', "").split())


def plan_rollups(
    settings: Settings, policies: Iterable[dict[str, Any]], queries: dict[str, str]
) -> list[str]:
    """The statements that bring the database from what SHOW reports to what settings ask.

    policies: rows of SHOW RETENTION POLICIES (name, duration); queries: CQ name -> its text
    from SHOW CONTINUOUS QUERIES (this database only). A changed CQ is dropped and recreated.
    """
    durations = {p["name"]: _go_duration_s(str(p["duration"])) for p in policies}
    db = quote_identifier(settings.influx.db)
    out: list[str] = []
    wanted = [(RAW_RP, settings.history.raw_retention)]
    wanted += [(r.rp, r.retention(settings)) for r in ROLLUPS]
    for name, duration in wanted:
        if name not in durations:
            out.append(_rp_statement(settings, name, duration, create=True))
        elif not math.isclose(durations[name], _duration_s(duration)):
            out.append(_rp_statement(settings, name, duration, create=False))
    for rollup in ROLLUPS:
        for measurement in rollup.measurements:
            name = rollup.cq_name(measurement)
            statement = cq_statement(settings, rollup, measurement)
            current = queries.get(name)
            if current is not None and _normalise(current) == _normalise(statement):
                continue
            if current is not None:
                out.append(f"DROP CONTINUOUS QUERY {quote_identifier(name)} ON {db}")
            out.append(statement)
    return out


def _policy_rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s.get("values", [])]


def _cq_texts(series: list[dict[str, Any]], database: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in series:
        if s.get("name") != database:
            continue
        for name, query in s.get("values", []):
            out[str(name)] = str(query)
    return out


def _show_policies(settings: Settings) -> str:
    return f"SHOW RETENTION POLICIES ON {quote_identifier(settings.influx.db)}"


_SHOW_CQS: Final = "SHOW CONTINUOUS QUERIES"


def ensure_rollups(client: InfluxClient, settings: Settings) -> list[str]:
    """Create or alter retention policies and continuous queries; return what ran."""
    policies = _policy_rows(client.query(_show_policies(settings)))
    queries = _cq_texts(client.query(_SHOW_CQS), settings.influx.db)
    changes = plan_rollups(settings, policies, queries)
    for statement in changes:
        client.execute(statement)
        log.info("rollup setup", extra={"statement": statement})
    return changes


async def ensure_rollups_async(influx: AsyncInflux, settings: Settings) -> list[str]:
    """`ensure_rollups` for the API's start-up (asyncio)."""
    policies = _policy_rows(await influx.query(_show_policies(settings)))
    queries = _cq_texts(await influx.query(_SHOW_CQS), settings.influx.db)
    changes = plan_rollups(settings, policies, queries)
    for statement in changes:
        await influx.execute(statement)
        log.info("rollup setup", extra={"statement": statement})
    return changes


def backfill_statements(settings: Settings, start_s: float, end_s: float) -> list[str]:
    """The SELECT ... INTO statements that roll up [start, end), widened to whole rollup points.

    Widening matters: a partial hour or day would overwrite its full rollup point with the
    aggregate of only part of it. Chunks keep each statement's memory and time bounded.
    """
    out: list[str] = []
    for rollup in ROLLUPS:
        step = rollup.seconds
        first = math.floor(start_s / step) * step
        last = math.ceil(end_s / step) * step
        for measurement in rollup.measurements:
            lo = first
            while lo < last:
                hi = min(lo + rollup.backfill_chunk_s, last)
                where = f"time >= {lo}s AND time < {hi}s"
                out.append(rollup_select(settings, rollup, measurement, where))
                lo = hi
    return out


def backfill(client: InfluxClient, settings: Settings, start_s: float, end_s: float) -> int:
    """Roll up a past range (CQs only cover recent intervals); return the points written."""
    if end_s <= start_s:
        raise ValueError("backfill: start must be before end")
    written = 0
    for statement in backfill_statements(settings, start_s, end_s):
        for series in client.execute(statement, epoch="s"):
            for row in series.get("values", []):
                written += int(row[series["columns"].index("written")])
    log.info("rollup backfill", extra={"start_s": start_s, "end_s": end_s, "written": written})
    return written
