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

from processors.detectors.base import Findings
from processors.state import grow

__all__ = ["SpikeDetector"]


class SpikeDetector:
    """Vectorised spike detector over (devices x fields)."""

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
        self.mid = np.full((0, m), np.nan)
        self.mid_ts = np.full((0, m), np.nan)
        self.mid_ref = np.full((0, m), -1, dtype=np.int64)
        self.scale = np.full((0, m), np.nan)
        self.learned = np.zeros((0, m), dtype=np.int64)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.prev = grow(self.prev, capacity, np.nan)
        self.mid = grow(self.mid, capacity, np.nan)
        self.mid_ts = grow(self.mid_ts, capacity, np.nan)
        self.mid_ref = grow(self.mid_ref, capacity, -1)
        self.scale = grow(self.scale, capacity, np.nan)
        self.learned = grow(self.learned, capacity, 0)

    def step(
        self,
        rows: npt.NDArray[np.intp],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
        ref: npt.NDArray[np.int64],
    ) -> Findings:
        """Finalise the middle reading of each device that got a new one; shift the window."""
        prev, mid = self.prev[rows], self.mid[rows]
        scale = np.fmax(self.scale[rows], self.resolution)
        learned = self.learned[rows]
        has_prev, has_mid = ~np.isnan(prev), ~np.isnan(mid)
        ready = present & has_prev & has_mid
        with np.errstate(invalid="ignore"):
            s = np.abs(mid - (prev + values) / 2.0) - np.abs(values - prev) / 2.0
            limit = self.threshold * scale
            spike = ready & (learned >= self.warmup) & (s > limit)
            score = np.clip(s / (2.0 * limit), 0.0, 1.0)
        # Learn the step into the middle reading unless it was a spike (protect the baseline).
        # Zero steps are not learned: a quantised series that mostly repeats itself would
        # otherwise get a tiny scale and call every ordinary quantum step a spike. Steps are
        # winsorised at 3 scales so a noisy stretch cannot inflate the scale in a few readings.
        with np.errstate(invalid="ignore"):
            step_size = np.abs(mid - prev)
            learn = ready & ~spike & (step_size > 0)
            step_size = np.where(learned >= self.warmup, np.fmin(step_size, 3.0 * scale), step_size)
            old = self.scale[rows]
            updated = np.where(np.isnan(old), step_size, old + self.alpha * (step_size - old))
        self.scale[rows] = np.where(learn, updated, old)
        self.learned[rows] = learned + learn
        # Shift: a spike is dropped from the window, as if it had not been read.
        mid_ts, mid_ref = self.mid_ts[rows], self.mid_ref[rows]
        self.prev[rows] = np.where(present & has_mid & ~spike, mid, prev)
        self.mid[rows] = np.where(present, values, mid)
        self.mid_ts[rows] = np.where(present, ts[:, None], mid_ts)
        self.mid_ref[rows] = np.where(present, ref[:, None], mid_ref)
        r, f = np.nonzero(ready if self.report_all else spike)
        return Findings(
            self.name,
            mid_ref[r, f],
            rows[r],
            f.astype(np.intp),
            mid_ts[r, f],
            mid[r, f],
            score[r, f],
            spike[r, f],
        )
