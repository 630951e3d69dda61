"""Spikes: one reading far from both neighbours, against a robust running step size.

The test is the QARTOD spike test made adaptive: for a middle reading m between p (before)
and n (after), S = |m - (p + n)/2| - |n - p|/2, which is large only when m leaves and comes
back; a sustained rise or a daily cycle moves p, m and n together and scores low. The scale is
an EWMA of the absolute step between accepted readings, floored at the field's resolution, and
spikes are kept out of it. The decision needs the next reading: one reporting interval of delay.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.detectors.base import BatchView, Findings
from processors.state import grow

__all__ = ["SpikeDetector"]


class SpikeDetector:
    """Vectorised spike detector over (devices x fields).

    The middle reading of the window is the field's previous usable reading (`BatchView.last`,
    kept in processors.state.LastReading); this detector keeps the reading before it (`prev`,
    which skips dropped spikes) and the scale.
    """

    name = "spike"
    report_all = True  # False: findings only for flagged readings (the live path)

    def __init__(
        self,
        resolution: npt.ArrayLike,
        *,
        threshold: float = 10.0,
        alpha: float = 0.05,
        warmup: int = 10,
    ) -> None:
        if threshold <= 0 or not 0 < alpha <= 1 or warmup < 0:
            raise ValueError("need threshold > 0, 0 < alpha <= 1, warmup >= 0")
        self.resolution = np.asarray(resolution, dtype=np.float64)
        self.threshold = threshold
        self.alpha = alpha
        self.warmup = warmup
        m = len(self.resolution)
        self.prev = np.full((0, m), np.nan)
        self.scale = np.full((0, m), np.nan)
        self.learned = np.zeros((0, m), dtype=np.int64)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.prev = grow(self.prev, capacity, np.nan)
        self.scale = grow(self.scale, capacity, np.nan)
        self.learned = grow(self.learned, capacity, 0)

    def process(self, batch: BatchView) -> Findings:
        """Judge the middle reading of each window a new reading completes; learn the batch."""
        order, columns = batch.order, batch.columns
        cells = np.ix_(order.rows, columns)
        prev, scale, learned = self.prev[cells], self.scale[cells], self.learned[cells]
        resolution = self.resolution[columns]
        values, mid = batch.values, batch.last
        shape = values.shape
        s_all = np.empty(shape)
        limit_all = np.empty(shape)
        spike_all = np.empty(shape, dtype=np.bool_)
        threshold, alpha, warmup = self.threshold, self.alpha, self.warmup
        present = batch.present
        # Steady state skips two selects per round: every window warm (learned counts only
        # grow) and every scale known (a known scale stays known).
        all_warm = bool((learned >= warmup).all())
        all_known = not np.isnan(scale).any()
        # NaN (no usable value) makes s NaN: not ready, and never a spike.
        with np.errstate(invalid="ignore"):
            for lo, hi in zip(order.bounds[:-1], order.bounds[1:], strict=True):
                n = hi - lo
                v, md, p, sc, ln = values[lo:hi], mid[lo:hi], prev[:n], scale[:n], learned[:n]
                s = np.abs(md - (p + v) / 2.0) - np.abs(v - p) / 2.0
                floor = np.fmax(sc, resolution)
                limit = threshold * floor
                spike = s > limit
                if not all_warm:
                    warm = ln >= warmup
                    spike &= warm
                s_all[lo:hi], limit_all[lo:hi], spike_all[lo:hi] = s, limit, spike
                # Learn the step into the middle reading unless it was a spike (protect the
                # baseline). Zero steps are not learned: a quantised series that mostly repeats
                # itself would otherwise get a tiny scale and call every ordinary quantum step
                # a spike. Steps are winsorised at 3 scales so a noisy stretch cannot inflate
                # the scale in a few readings.
                step = np.abs(md - p)
                learn = step > 0
                learn &= s == s  # the window is complete
                shift = present[lo:hi]
                if spike.any():
                    learn &= ~spike
                    shift = shift & ~spike
                winsorised = np.fmin(step, 3.0 * floor)
                if not all_warm:
                    winsorised = np.where(warm, winsorised, step)
                updated = sc + alpha * (winsorised - sc)
                if not all_known:
                    updated = np.where(np.isnan(sc), winsorised, updated)
                np.copyto(sc, updated, where=learn)
                ln += learn
                # Shift: a spike is dropped from the window, as if it had not been read. (A
                # NaN middle only replaces a NaN prev: prev is only ever set from the middle.)
                np.copyto(p, md, where=shift)
        self.prev[cells], self.scale[cells], self.learned[cells] = prev, scale, learned
        ready = s_all == s_all
        cell = np.nonzero(ready if self.report_all else spike_all)
        with np.errstate(invalid="ignore"):
            score = np.clip(s_all[cell] / (2.0 * limit_all[cell]), 0.0, 1.0)
        return batch.findings(
            self.name,
            cell,
            score,
            spike_all[cell],
            ts=batch.last_ts[cell],
            value=mid[cell],
            ref=batch.last_ref[cell],
        )
