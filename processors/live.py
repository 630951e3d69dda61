"""Live indicators kept as per-device arrays and updated one batch of readings at a time.

- Air: ISPU (P.14/2020) from 24-hour means kept as 24 hourly bins per station and pollutant; a
  mean counts with at least 18 of its 24 hours (75 %) reported. US AQI beside it from the
  same 24-hour PM2.5/PM10 means (EPA's 24-hour pollutants only; the 8-hour and 1-hour ones
  need windows the station state does not keep).
- Water: alert level from the gauge's registry thresholds, rate of rise (least squares over
  the last hour of the latest 32 readings) and hours to the next level at that rate.
- Streetlights: per lamp whether it works now, energy and day-burn hours of the local day;
  per district the share of lamps working among those that should be on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.indicators import (
    FloodThresholds,
    aqi_index,
    flood_level,
    ispu_index,
    lamp_should_be_off,
    lamp_should_be_on,
    lamp_working,
    next_level,
    time_to_next_level,
)
from processors.indicators.streetlight import local_day
from processors.state import OrderedBatch, grow

__all__ = ["Indicators", "LiveIndicators"]

_ISPU: Final = ("pm10", "pm25", "so2", "co", "o3", "no2", "hc")
_RING: Final = 32
_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.intp]


@dataclass
class Indicators:
    """Indicator values per device row (`rows`) and per district, for one batch."""

    rows: _Int = field(default_factory=lambda: np.empty(0, np.intp))
    ts: _Float = field(default_factory=lambda: np.empty(0))
    numbers: dict[str, _Float] = field(default_factory=dict)
    labels: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    districts: dict[str, dict[str, float]] = field(default_factory=dict)
    district_ts: dict[str, float] = field(default_factory=dict)


class LiveIndicators:
    """The live indicator state of one kind."""

    def __init__(self, spec: KindSpec) -> None:
        self.spec = spec
        names = spec.field_names
        self.kind = spec.kind
        self._air = [names.index(p) for p in _ISPU] if spec.kind == "air_quality" else []
        self._level = names.index("level_cm") if "level_cm" in names else -1
        self.hour = np.full((0, 24), -1, dtype=np.int64)
        self.sums = np.zeros((0, len(self._air), 24))
        self._reported = [False] * len(self._air)  # pollutants ever summed (derived)
        self.counts = np.zeros((0, len(self._air), 24))
        self.ring_ts = np.full((0, _RING), np.nan)
        self.ring_level = np.full((0, _RING), np.nan)
        self.ring_next = np.zeros(0, dtype=np.int64)
        self.lamp_ts = np.full(0, np.nan)
        self.lamp_working = np.zeros(0, dtype=np.bool_)
        self.lamp_due = np.zeros(0, dtype=np.bool_)  # should be on at its latest reading
        self.lamp_day = np.full(0, -1, dtype=np.int64)
        self.energy_first = np.full(0, np.nan)
        self.energy_last = np.full(0, np.nan)
        self.burn_s = np.zeros(0)
        self.burning = np.zeros(0, dtype=np.bool_)

    def recount(self) -> None:
        """Rederive what is derived from the state arrays (after they were replaced)."""
        if self._air:
            self._reported = [bool(x) for x in np.any(self.counts, axis=(0, 2)).reshape(-1)]

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        for name, fill in (
            ("hour", -1),
            ("sums", 0.0),
            ("counts", 0.0),
            ("ring_ts", np.nan),
            ("ring_level", np.nan),
            ("ring_next", 0),
            ("lamp_ts", np.nan),
            ("lamp_working", False),
            ("lamp_due", False),
            ("lamp_day", -1),
            ("energy_first", np.nan),
            ("energy_last", np.nan),
            ("burn_s", 0.0),
            ("burning", False),
        ):
            setattr(self, name, grow(getattr(self, name), capacity, fill))

    def learn(
        self,
        order: OrderedBatch,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        facts: dict[str, _Float],
    ) -> None:
        """Learn a batch of fresh readings, round-major (see order_batch), all fields."""
        if len(order) == 0:
            return
        if self._air:
            self._air_learn(order, ts, values[:, self._air], present[:, self._air])
        bounds = list(zip(order.bounds[:-1], order.bounds[1:], strict=True))
        if self._level >= 0:
            for lo, hi in bounds:
                have = present[lo:hi, self._level]
                r = order.rows[: hi - lo][have]
                slot = self.ring_next[r] % _RING
                self.ring_ts[r, slot] = ts[lo:hi][have]
                self.ring_level[r, slot] = values[lo:hi, self._level][have]
                self.ring_next[r] += 1
        if self.kind == "streetlight":
            rows = order.rows[order.group]
            lat, lon = facts["lat"][rows], facts["lon"][rows]
            # The sun for every located reading at once, not per round.
            located = np.isfinite(lat) & np.isfinite(lon)
            up, due = np.zeros(len(ts), bool), np.zeros(len(ts), bool)
            if located.any():
                at = (lat[located], lon[located], ts[located])
                up[located], due[located] = lamp_should_be_off(*at), lamp_should_be_on(*at)
            for lo, hi in bounds:
                self._lamp_step(
                    order.rows[: hi - lo],
                    ts[lo:hi],
                    values[lo:hi],
                    present[lo:hi],
                    facts,
                    up[lo:hi],
                    due[lo:hi],
                )

    def _air_learn(
        self, order: OrderedBatch, ts: _Float, conc: _Float, present: npt.NDArray[np.bool_]
    ) -> None:
        """Hourly bins: each (device, slot) ends with the newest hour it saw, summed in order.

        Reading by reading, a bin holding an older day's hour is reset and then summed into,
        readings older than the bin's hour are ignored. Readings come in time order per device,
        so the bin ends holding the newest hour among its old one and the batch's, with the old
        sums kept only if that is still the old hour: computed per (group, slot) at once.
        """
        hour = np.floor(ts / 3600.0).astype(np.int64)
        cells = len(order.rows) * 24
        key = order.group * 24 + hour % 24
        never = np.iinfo(np.int64).min
        newest = np.full(cells, never, dtype=np.int64)
        np.maximum.at(newest, key, hour)
        touched = np.flatnonzero(newest > never)
        row, slot = order.rows[touched // 24], touched % 24
        old_hour = self.hour[row, slot]
        final = np.maximum(old_hour, newest[touched])
        newest[touched] = final
        keep = old_hour == final
        add = hour == newest[key]  # older readings than the bin's hour are ignored
        # Flat positions of the touched bins of every pollutant: take/put beat fancy indexing.
        n_air = len(self._air)
        flat = (row * (n_air * 24) + slot)[:, None] + np.arange(n_air) * 24
        old_sums, old_counts = np.take(self.sums, flat), np.take(self.counts, flat)
        sums = np.where(keep[:, None], old_sums, 0.0)
        counts = np.where(keep[:, None], old_counts, 0.0)
        carried = touched[keep]
        for p in range(conc.shape[1]):
            use = add & present[:, p]
            if not use.any():
                continue
            self._reported[p] = True
            # The old sum first, then the readings in time order: the same additions, in the
            # same order, as one reading at a time.
            where = np.concatenate([carried, key[use]])
            sums[:, p] = np.bincount(
                where, np.concatenate([old_sums[keep, p], conc[use, p]]), cells
            )[touched]
            counts[:, p] = np.bincount(
                where, np.concatenate([old_counts[keep, p], np.ones(int(use.sum()))]), cells
            )[touched]
        self.hour[row, slot] = final
        np.put(self.sums, flat, sums)
        np.put(self.counts, flat, counts)

    def _lamp_step(
        self,
        rows: _Int,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        facts: dict[str, _Float],
        up: npt.NDArray[np.bool_],
        due: npt.NDArray[np.bool_],
    ) -> None:
        col = self.spec.column

        def get(name: str) -> _Float:
            column = col(name)
            result: _Float = np.where(present[:, column], values[:, column], np.nan)
            return result

        rated = facts["rated_w"][rows]
        day = local_day(ts)
        new_day = day != self.lamp_day[rows]
        energy = get("energy_wh")
        first = np.where(new_day, energy, self.energy_first[rows])
        self.energy_first[rows] = np.where(np.isnan(first), energy, first)
        self.energy_last[rows] = np.where(np.isnan(energy), self.energy_last[rows], energy)
        # Day-burn: time lit since the previous reading, counted when the sun is up now.
        elapsed = np.nan_to_num(ts - self.lamp_ts[rows], nan=0.0)
        burn = np.where(new_day, 0.0, self.burn_s[rows])
        self.burn_s[rows] = burn + np.where(self.burning[rows] & up, elapsed, 0.0)
        on = get("lamp_on") == 1.0
        self.burning[rows] = on
        self.lamp_day[rows] = day
        self.lamp_ts[rows] = ts
        self.lamp_working[rows] = lamp_working(
            get("lamp_on"), get("dim_pct"), get("power_w"), rated
        )
        self.lamp_due[rows] = due

    def compute(
        self, rows: _Int, facts: dict[str, _Float], districts: npt.NDArray[Any], now: float
    ) -> Indicators:
        """Current indicators of the given devices (and of their districts)."""
        rows = np.unique(rows)
        out = Indicators(rows=rows)
        if len(rows) == 0:
            return out
        if self._air:
            self._air_indicators(rows, out)
        elif self._level >= 0:
            self._flood_indicators(rows, facts, out)
        elif self.kind == "streetlight":
            self._lamp_indicators(rows, districts, now, out)
        return out

    def _air_indicators(self, rows: _Int, out: Indicators) -> None:
        hour = np.take(self.hour, rows, axis=0)
        newest = hour.max(axis=1)
        recent = (hour > (newest - 24)[:, None]).astype(np.float64)  # the station's last 24 h
        means = np.full((len(rows), len(_ISPU)), np.nan)
        # Only pollutants some station ever reported: the others' means are NaN anyway.
        for i in np.flatnonzero(self._reported).tolist():
            # Bins outside the window times 0.0 (all finite): the same sums as masking them.
            counts = np.take(self.counts[:, i, :], rows, axis=0) * recent
            sums = np.take(self.sums[:, i, :], rows, axis=0) * recent
            hours_with_data = np.count_nonzero(counts, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = sums.sum(axis=1) / counts.sum(axis=1)
            means[:, i] = np.where(hours_with_data >= 18, mean, np.nan)  # 75 % of 24 hours
        result = ispu_index({p: means[:, i] for i, p in enumerate(_ISPU)})
        aqi = aqi_index(
            {"pm25": means[:, _ISPU.index("pm25")], "pm10": means[:, _ISPU.index("pm10")]}
        )
        out.ts = ((newest + 1) * 3600.0).astype(np.float64)  # end of the newest hour
        out.numbers = {"ispu": result.reported, "aqi": aqi.reported}
        out.labels = {
            "ispu_category": result.category,
            "ispu_colour": result.colour_hex,
            "ispu_critical": result.critical,
            "aqi_category": aqi.category,
        }

    def _flood_indicators(self, rows: _Int, facts: dict[str, _Float], out: Indicators) -> None:
        ring_ts, ring_level = self.ring_ts[rows], self.ring_level[rows]
        latest_slot = (self.ring_next[rows] - 1) % _RING
        ts = ring_ts[np.arange(len(rows)), latest_slot]
        level = ring_level[np.arange(len(rows)), latest_slot]
        window = ~np.isnan(ring_ts) & (ring_ts > (ts - 3600.0)[:, None])
        n = window.sum(axis=1)
        t = np.where(window, (ring_ts - ts[:, None]) / 3600.0, 0.0)
        y = np.where(window, ring_level, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_mean, y_mean = t.sum(1) / n, y.sum(1) / n
            cov = (np.where(window, (t - t_mean[:, None]) * (y - y_mean[:, None]), 0.0)).sum(1)
            var = (np.where(window, (t - t_mean[:, None]) ** 2, 0.0)).sum(1)
            rate = np.where((n >= 2) & (var > 0), cov / var, np.nan)
        thresholds = FloodThresholds(
            facts["waspada_cm"][rows], facts["siaga_cm"][rows], facts["awas_cm"][rows]
        )
        alert = flood_level(level, thresholds)
        following, _ = next_level(level, thresholds)
        out.ts = ts
        has_thresholds = ~np.isnan(facts["waspada_cm"][rows])
        out.numbers = {
            "level_cm": level,
            "rate_cm_h": rate,
            "flood_level": np.where(has_thresholds, alert.astype(np.float64), np.nan),
            "hours_to_next_level": np.where(
                has_thresholds, time_to_next_level(level, rate, thresholds), np.nan
            ),
            "next_level": np.where(has_thresholds, following.astype(np.float64), np.nan),
        }
        names = np.array(["", "Normal", "Waspada", "Siaga", "Awas"], dtype=object)
        out.labels = {"flood_status": np.where(has_thresholds, names[alert.astype(int) + 1], "")}

    def _lamp_indicators(
        self, rows: _Int, districts: npt.NDArray[Any], now: float, out: Indicators
    ) -> None:
        out.ts = self.lamp_ts[rows]
        energy = self.energy_last[rows] - self.energy_first[rows]
        out.numbers = {
            "working": self.lamp_working[rows].astype(np.float64),
            "energy_today_wh": np.where(energy >= 0, energy, np.nan),  # a counter reset today
            "day_burn_h_today": self.burn_s[rows] / 3600.0,
        }
        fresh = now - self.lamp_ts < 3 * 3600.0
        for district in sorted({str(d) for d in districts[rows]}):
            mine = (districts[: len(self.lamp_ts)] == district) & fresh
            due = mine & self.lamp_due
            total_energy = self.energy_last[mine] - self.energy_first[mine]
            out.districts[district] = {
                "availability": float(self.lamp_working[due].mean()) if due.any() else float("nan"),
                "lamps_due": float(due.sum()),
                "lamps_reporting": float(mine.sum()),
                "energy_today_wh": float(np.nansum(np.where(total_energy >= 0, total_energy, 0.0))),
                "day_burn_h_today": float(self.burn_s[mine].sum() / 3600.0),
            }
            out.district_ts[district] = float(np.nanmax(self.lamp_ts[mine])) if mine.any() else now
