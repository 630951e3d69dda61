"""Hourly area snapshots: indicators and the six dimension scores per district and regency.

At every whole hour of observation time (the newest indicator's ts crossing an hour boundary)
the recorder writes, per city, one `area_hourly` point for the regency and one per district:
tags `city`, `area` ("regency" or the district), fields the area metrics (`air_quality.ispu_mean`
stored as `air_quality__ispu_mean`) and the dimension scores (`dim_smart_environment`), at the
hour. The values are the state as of the hour (entries observed at or before it). A point is
keyed by its series and hour, so replicas writing the same hour write one point.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, Final

from api.areas import area_metrics, area_summary
from api.livestate import IndicatorEntry, LiveState
from api.scoring import DIMENSIONS, ScoringModel
from pantau.influx import InfluxError, quote_literal
from pantau.influx_async import AsyncInflux, rows
from pantau.lineprotocol import point

__all__ = [
    "MEASUREMENT",
    "HourlyRecorder",
    "dimension_field",
    "due_snapshots",
    "lines_for_hour",
    "metric_field",
    "scores_history",
]

log = logging.getLogger(__name__)

MEASUREMENT: Final = "area_hourly"
HOUR_S: Final = 3600
# A jump of observation time (a replay, a long outage) snapshots at most this many hours:
# the state held is the newest one, not a history, so older hours cannot be rebuilt from it.
MAX_HOURS_PER_STEP: Final = 24
_DIM_PREFIX: Final = "dim_"

CityOf = Callable[[str], str | None]
_Key = tuple[str, str, str]


def metric_field(metric: str) -> str:
    """The field key of an area metric: `air_quality.ispu_mean` -> `air_quality__ispu_mean`."""
    return metric.replace(".", "__")


def dimension_field(dimension: str) -> str:
    """The field key of a dimension's score: `smart_environment` -> `dim_smart_environment`."""
    return _DIM_PREFIX + dimension


def due_snapshots(last_hour: int | None, newest_ts: float | None) -> tuple[int | None, list[int]]:
    """The hour boundaries crossed since `last_hour`, given the newest observation time.

    Returns the new last hour and the hours to snapshot (oldest first, at most
    MAX_HOURS_PER_STEP, the newest ones). On the first call nothing is due: the hour that
    started before the recorder did is not one it saw end.
    """
    if newest_ts is None or not math.isfinite(newest_ts):
        return last_hour, []
    current = int(newest_ts // HOUR_S) * HOUR_S
    if last_hour is None or current <= last_hour:
        return (current if last_hour is None else last_hour), []
    first = max(last_hour + HOUR_S, current - (MAX_HOURS_PER_STEP - 1) * HOUR_S)
    return current, list(range(first, current + HOUR_S, HOUR_S))


def lines_for_hour(
    entries: Iterable[IndicatorEntry],
    hour: int,
    model: ScoringModel,
    city_of: CityOf | None = None,
) -> list[str]:
    """The `area_hourly` lines of one hour from the entries observed at or before it."""
    by_city: dict[str, list[IndicatorEntry]] = {}
    for entry in entries:
        if entry.ts <= hour:
            city = (city_of(entry.district) if city_of is not None else None) or entry.city
            by_city.setdefault(city, []).append(entry)
    lines = []
    for city, members in sorted(by_city.items()):
        districts: dict[str, list[IndicatorEntry]] = {}
        for entry in members:
            districts.setdefault(entry.district, []).append(entry)
        for area, chosen in [("regency", members), *sorted(districts.items())]:
            metrics = area_metrics(area_summary(chosen))
            fields: dict[str, float] = {metric_field(k): v for k, (v, _) in metrics.items()}
            for dim in model.score(metrics, now=float(hour)):
                if dim["score"] is not None:
                    fields[dimension_field(dim["dimension"])] = float(dim["score"])
            if fields:
                lines.append(point(MEASUREMENT, {"area": area, "city": city}, fields, hour * 10**9))
    return lines


class HourlyRecorder:
    """Writes the hourly area snapshots while the API runs (one task per process)."""

    def __init__(
        self,
        state: LiveState,
        model: ScoringModel,
        influx: AsyncInflux,
        city_of: CityOf | None = None,
    ) -> None:
        self.state = state
        self.model = model
        self.influx = influx
        self.city_of = city_of
        self.last_hour: int | None = None
        self.written = 0  # points written (for tests and logs)
        # Per entry, the newest one seen observed at or before the next boundary: a device whose
        # entry moved past the boundary still counts with its value as of the hour.
        self._asof: dict[_Key, IndicatorEntry] = {}

    def _as_of(self, hour: int) -> list[IndicatorEntry]:
        out = dict(self._asof)
        for key, entry in self.state.indicators.items():
            if entry.ts <= hour:
                out[key] = entry
        return [e for e in out.values() if e.ts <= hour]

    def _remember(self) -> None:
        if self.last_hour is None:
            return
        boundary = self.last_hour + HOUR_S
        for key, entry in self.state.indicators.items():
            known = self._asof.get(key)
            if entry.ts <= boundary and (known is None or entry.ts >= known.ts):
                self._asof[key] = entry

    async def step(self) -> int:
        """Snapshot the hours crossed since the last step; the points written."""
        newest = max((e.ts for e in self.state.indicators.values()), default=None)
        new_last, hours = due_snapshots(self.last_hour, newest)
        lines = [
            line
            for hour in hours
            for line in lines_for_hour(self._as_of(hour), hour, self.model, self.city_of)
        ]
        if lines:
            # On failure the hours stay due: the next step writes them again.
            await self.influx.write("\n".join(lines) + "\n")
            self.written += len(lines)
            log.info("hourly area snapshots written", extra={"hours": hours, "points": len(lines)})
        self.last_hour = new_last
        self._remember()
        return len(lines)

    async def run(self, tick_s: float) -> None:
        """Step every `tick_s` seconds until cancelled; InfluxDB failures are retried."""
        while True:
            try:
                await self.step()
            except InfluxError as exc:
                log.warning("could not write hourly snapshots", extra={"error": str(exc)})
            await asyncio.sleep(tick_s)


async def scores_history(
    influx: AsyncInflux, area: str, since: float, until: float
) -> list[dict[str, Any]]:
    """The stored hourly points of one area, oldest first, in the reports/scores shape."""
    query = (
        f'SELECT * FROM "{MEASUREMENT}" WHERE "area" = {quote_literal(area)} '
        f"AND time >= {int(since * 1e9)} AND time < {int(until * 1e9)} ORDER BY time ASC"
    )
    out = []
    for row in rows(await influx.query(query)):
        dimensions: dict[str, float | None] = {label: None for label in DIMENSIONS.values()}
        metrics: dict[str, float] = {}
        for name, value in row.items():
            if name in ("time", "area", "city") or not isinstance(value, int | float):
                continue
            if name.startswith(_DIM_PREFIX) and name[len(_DIM_PREFIX) :] in DIMENSIONS:
                dimensions[DIMENSIONS[name[len(_DIM_PREFIX) :]]] = float(value)
            else:
                metrics[name.replace("__", ".", 1)] = float(value)
        out.append({"ts": int(row["time"]) // 10**9, "dimensions": dimensions, "metrics": metrics})
    return out
