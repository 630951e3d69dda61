"""Rate of change beyond a per-field physical limit between consecutive readings.

For water level a fast rise is usually water, not a fault: a rise beyond the limit while it
rains at the gauge (rain over the last hours, decayed) is reported as `flood_rise`, an event
for the operations centre; the same jump with no rain is `rate_of_change`, a suspect sensor.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.detectors.base import Findings
from processors.state import grow

__all__ = ["RateDetector"]


class RateDetector:
    """Vectorised rate-of-change detector; optionally rain-aware for one rising field."""

    name = "rate_of_change"
    report_all = True  # False: findings only for flagged readings (the live path)

    def __init__(
        self,
        max_rate_per_h: npt.ArrayLike,
        *,
        rise_field: int | None = None,
        rain_field: int | None = None,
        rain_memory_h: float = 3.0,
        rain_mm: float = 0.5,
    ) -> None:
        self.max_rate_per_h = np.asarray(max_rate_per_h, dtype=np.float64)
        self.rise_field = rise_field
        self.rain_field = rain_field
        self.rain_memory_h = rain_memory_h
        self.rain_mm = rain_mm
        m = len(self.max_rate_per_h)
        self.last = np.full((0, m), np.nan)
        self.last_ts = np.full((0, m), np.nan)
        self.rain = np.zeros(0)
        self.rain_ts = np.full(0, np.nan)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.last = grow(self.last, capacity, np.nan)
        self.last_ts = grow(self.last_ts, capacity, np.nan)
        self.rain = grow(self.rain, capacity, 0.0)
        self.rain_ts = grow(self.rain_ts, capacity, np.nan)

    def step(
        self,
        rows: npt.NDArray[np.intp],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
        ref: npt.NDArray[np.int64],
    ) -> tuple[Findings, Findings]:
        """Rate findings, and flood-rise findings (empty unless rain-aware)."""
        last, last_ts = self.last[rows], self.last_ts[rows]
        hours = (ts[:, None] - last_ts) / 3600.0
        judged = present & ~np.isnan(last) & (hours > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.abs(values - last) / hours
            fast = judged & (rate > self.max_rate_per_h)
            score = np.clip(rate / (2.0 * self.max_rate_per_h), 0.0, 1.0)
        rising_with_rain = np.zeros_like(fast)
        if self.rise_field is not None and self.rain_field is not None:
            rain = self._rain(rows, ts, values, present)
            j = self.rise_field
            rising_with_rain[:, j] = (
                fast[:, j] & (values[:, j] > last[:, j]) & (rain >= self.rain_mm)
            )
        self.last[rows] = np.where(present, values, last)
        self.last_ts[rows] = np.where(present, ts[:, None], last_ts)
        refs = np.broadcast_to(ref[:, None], present.shape)
        r, f = np.nonzero(judged if self.report_all else fast & ~rising_with_rain)
        rate_findings = Findings(
            self.name,
            refs[r, f],
            rows[r],
            f.astype(np.intp),
            ts[r],
            values[r, f],
            score[r, f],
            (fast & ~rising_with_rain)[r, f],
        )
        fr, ff = np.nonzero(rising_with_rain)
        flood = Findings(
            "flood_rise",
            refs[fr, ff],
            rows[fr],
            ff.astype(np.intp),
            ts[fr],
            values[fr, ff],
            score[fr, ff],
            np.ones(len(fr), dtype=np.bool_),
        )
        return rate_findings, flood

    def _rain(
        self,
        rows: npt.NDArray[np.intp],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.float64]:
        """Recent rain per device: exponentially decayed sum, including this reading's."""
        assert self.rain_field is not None
        j = self.rain_field
        elapsed = np.nan_to_num((ts - self.rain_ts[rows]) / 3600.0, nan=np.inf)
        decayed = self.rain[rows] * np.exp(-np.fmax(elapsed, 0.0) / self.rain_memory_h)
        fresh = np.where(present[:, j], values[:, j], 0.0)
        rain: npt.NDArray[np.float64] = decayed + fresh
        self.rain[rows] = rain
        self.rain_ts[rows] = ts
        return rain
