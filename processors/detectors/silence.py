"""Stale or offline devices: silent for more than k reporting intervals.

Found two ways: a periodic `sweep(now)` flags devices that have gone quiet (the live path, so
a dead device is noticed without any data arriving), and a reading that ends a long gap flags
the gap (histories, or a gap the sweep did not see). The interval comes from the registry, or
is learned from the device's own spacing (gaps excluded) when the registry has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings
from processors.detectors.protocol import DetectorBase, Report
from processors.state import StateField

__all__ = ["SilenceDetector"]


class SilenceDetector(DetectorBase):
    """Per-device silence detector with a sweep."""

    name = "dropout"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("last_ts", np.nan),
        StateField("known", np.nan),  # registry interval (taken anew from the registry)
        StateField("learned", np.nan),
        StateField("silent", False),  # already reported by a sweep
    )
    reports: ClassVar[tuple[Report, ...]] = (Report("dropout", "warning"),)

    def __init__(
        self,
        *,
        factor: float = 3.0,
        alpha: float = 0.1,
        min_interval_s: float = 1.0,
        report_all: bool = True,
    ) -> None:
        if factor <= 1 or not 0 < alpha <= 1:
            raise ValueError("need factor > 1 and 0 < alpha <= 1")
        self.factor = factor
        self.alpha = alpha
        self.min_interval_s = min_interval_s
        self.report_all = report_all
        self.last_ts = np.full(0, np.nan)
        self.known = np.full(0, np.nan)  # registry interval
        self.learned = np.full(0, np.nan)
        self.silent = np.zeros(0, dtype=np.bool_)  # already reported by a sweep

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind (the same for all)."""
        return cls(report_all=report_all, **params)

    def take_facts(self, facts: Mapping[str, npt.NDArray[Any]], start: int, stop: int) -> None:
        """The registry's reporting interval of state rows [start, stop)."""
        self.known[start:stop] = facts["interval_s"][start:stop]

    def interval(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """Expected reporting interval per device (registry first, else learned)."""
        return np.where(np.isnan(self.known[rows]), self.learned[rows], self.known[rows])

    def process(self, batch: BatchView) -> list[Findings]:
        """Report the gaps the batch's readings end, learn their spacing, clear silences."""
        order, ts = batch.order, batch.ts
        rows = order.rows
        last = np.empty(len(ts))  # each reading's previous time on the device
        first = order.bounds[1]
        last[:first] = self.last_ts[rows]
        last[first:] = ts[order.prev[first:]]
        gap = ts - last
        known = self.known[rows]
        learned = self.learned[rows]
        interval = np.empty(len(ts))
        factor, alpha, floor = self.factor, self.alpha, self.min_interval_s
        with np.errstate(invalid="ignore"):
            for lo, hi in zip(order.bounds[:-1], order.bounds[1:], strict=True):
                n, g = hi - lo, gap[lo:hi]
                ln = learned[:n]
                iv = np.where(np.isnan(known[:n]), ln, known[:n])
                interval[lo:hi] = iv
                # Learn spacing from ordinary steps only: a gap must not teach a longer interval.
                ordinary = (g > 0) & ~(g > factor * iv)
                spacing = np.fmax(g, floor)
                np.copyto(
                    ln, np.where(np.isnan(ln), spacing, ln + alpha * (spacing - ln)), where=ordinary
                )
            ended = gap > factor * interval
        self.learned[rows] = learned
        report = ended
        report[: len(rows)] &= ~self.silent[rows]  # a sweep already reported this silence
        self.silent[rows] = False
        self.last_ts[rows] = ts[order.last]
        judged = gap == gap if self.report_all else report
        with np.errstate(invalid="ignore"):
            score = np.clip(gap[judged] / (2.0 * factor * interval[judged]), 0.0, 1.0)
        r = np.flatnonzero(judged)
        return [
            Findings(
                self.name,
                batch.ref[r],
                batch.rows[r],
                np.full(len(r), -1, dtype=np.intp),
                (last + factor * interval)[r],  # when a sweep would have noticed
                gap[r],
                np.nan_to_num(score),
                report[r],
            )
        ]

    def sweep(self, now: float) -> Findings:
        """Devices silent for more than `factor` intervals at `now`, each reported once."""
        rows = np.arange(len(self.last_ts), dtype=np.intp)
        silence = now - self.last_ts
        interval = self.interval(rows)
        with np.errstate(invalid="ignore"):
            quiet = ~self.silent & ~np.isnan(silence) & (silence > self.factor * interval)
        self.silent |= quiet
        r = rows[quiet]
        return Findings(
            self.name,
            np.full(len(r), -1, dtype=np.int64),
            r,
            np.full(len(r), -1, dtype=np.intp),
            np.full(len(r), now),
            silence[r],
            np.ones(len(r)),
            np.ones(len(r), dtype=np.bool_),
        )
