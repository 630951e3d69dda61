"""Rate of change beyond a per-field physical limit between consecutive readings.

For water level a fast rise is usually water, not a fault: a rise beyond the limit while it
rains at the gauge (rain over the last hours, decayed) is reported as `flood_rise`, an event
for the operations centre; the same jump with no rain is `rate_of_change`, a suspect sensor.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings, split_cells
from processors.detectors.protocol import DetectorBase, Report
from processors.state import RowOperand, Scratch, StateField

__all__ = ["RateDetector"]


class RateDetector(DetectorBase):
    """Vectorised rate-of-change detector; optionally rain-aware for one rising field.

    The reading each one is compared against is the field's previous usable reading
    (`BatchView.last`, kept in processors.state.LastReading); this detector keeps the rain.
    """

    name = "rate_of_change"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("rain", 0.0),
        StateField("rain_ts", np.nan),
    )
    reports: ClassVar[tuple[Report, ...]] = (
        Report("rate_of_change", "warning"),
        Report("flood_rise", "critical"),
    )

    def __init__(
        self,
        max_rate_per_h: npt.ArrayLike,
        *,
        rise_field: int | None = None,
        rain_field: int | None = None,
        rain_memory_h: float = 3.0,
        rain_mm: float = 0.5,
        report_all: bool = True,
    ) -> None:
        self.max_rate_per_h = np.asarray(max_rate_per_h, dtype=np.float64)
        self.rise_field = rise_field
        self.rain_field = rain_field
        self.rain_memory_h = rain_memory_h
        self.rain_mm = rain_mm
        self.report_all = report_all
        self.rain = np.zeros(0)
        self.rain_ts = np.full(0, np.nan)
        self._scratch = Scratch()

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind: rain-aware for water level with a rain gauge."""
        names = spec.field_names
        return cls(
            spec.max_rates_per_h(),
            rise_field=names.index("level_cm") if "level_cm" in names else None,
            rain_field=names.index("rain_mm") if "rain_mm" in names else None,
            report_all=report_all,
            **params,
        )

    def process(self, batch: BatchView) -> list[Findings]:
        """Rate findings, and flood-rise findings (empty unless rain-aware)."""
        # Each reading's usable rain value, NaN where none.
        rain_mm = batch.full[:, self.rain_field] if self.rain_field is not None else np.empty(0)
        values, last = batch.values, batch.last
        shape = values.shape
        limit = self.max_rate_per_h[batch.columns]
        with np.errstate(invalid="ignore", divide="ignore"):
            hours = np.subtract(batch.ts[:, None], batch.last_ts, out=self._scratch("hours", shape))
            hours /= 3600.0
            rate = np.subtract(values, last, out=self._scratch("rate", shape))
            np.abs(rate, out=rate)
            rate /= hours
            fast = self._scratch("fast", shape, np.bool_)
            RowOperand(limit).apply(np.greater, rate, fast)
        rain_aware = self.rain_field is not None and self.rise_field is not None
        rain = self._rain(batch, rain_mm) if rain_aware else None  # moves with every reading
        if self.report_all:
            # NaN (no usable value now or before) compares False: not judged.
            with np.errstate(invalid="ignore"):
                judged = hours > 0
                judged &= values == values
                judged &= last == last
            at = np.flatnonzero(judged)
            fast_at = np.take(fast, at)
        else:
            # A fast change needs a usable value now and before (else the rate is NaN): judge
            # only the fast cells.
            at = np.flatnonzero(fast)
            fast_at = np.take(hours, at) > 0
            at = at[fast_at]
            fast_at = fast_at[fast_at]
        i, c = split_cells(at, len(limit))
        flood_at = np.zeros(len(at), dtype=np.bool_)
        if rain is not None:
            rise = np.take(values, at) > np.take(last, at)
            flood_at = fast_at & (np.take(batch.columns, c) == self.rise_field) & rise
            flood_at &= np.take(rain, i) >= self.rain_mm
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.take(rate, at) / (2.0 * np.take(limit, c))
        np.clip(score, 0.0, 1.0, out=score)
        bad = fast_at & ~flood_at
        if self.report_all or bad.all():
            rate_findings = batch.findings(self.name, at, score, bad)
        else:
            rate_findings = batch.findings(self.name, at[bad], score[bad], bad[bad])
        flood_findings = batch.findings(
            "flood_rise", at[flood_at], score[flood_at], np.ones(int(flood_at.sum()), np.bool_)
        )
        return [rate_findings, flood_findings]

    def _rain(self, batch: BatchView, rain_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Recent rain per reading: exponentially decayed sum, including this reading's."""
        order = batch.order
        rain, rain_ts = self.rain[order.rows], self.rain_ts[order.rows]
        fresh = np.nan_to_num(rain_mm, nan=0.0)
        out = np.empty(len(batch.ts))
        for lo, hi in zip(order.bounds[:-1], order.bounds[1:], strict=True):
            n, ts = hi - lo, batch.ts[lo:hi]
            elapsed = np.nan_to_num((ts - rain_ts[:n]) / 3600.0, nan=np.inf)
            rain[:n] = rain[:n] * np.exp(-np.fmax(elapsed, 0.0) / self.rain_memory_h) + fresh[lo:hi]
            rain_ts[:n] = ts
            out[lo:hi] = rain[:n]
        self.rain[order.rows], self.rain_ts[order.rows] = rain, rain_ts
        return out
