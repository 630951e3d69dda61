"""Stuck sensors: a field that should vary repeats one value far longer than it normally does.

Quantised sensors repeat values legitimately (a manual gauge at 10 cm for days), so the
threshold is learned per device and field: `factor` times a slowly decaying maximum of the
run lengths seen so far, and never below `min_run`. Runs that were flagged are not learned.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.detectors.base import Findings
from processors.state import grow

__all__ = ["StuckDetector"]


class StuckDetector:
    """Vectorised stuck/flat-line detector over (devices x fields)."""

    name = "stuck"
    report_all = True  # False: findings only for flagged readings (the live path)

    def __init__(
        self,
        varies: npt.ArrayLike,
        *,
        min_run: int = 6,
        factor: float = 3.0,
        decay: float = 0.999,
        warmup_runs: int = 20,
    ) -> None:
        if min_run < 2 or factor < 1 or not 0 < decay <= 1:
            raise ValueError("need min_run >= 2, factor >= 1, 0 < decay <= 1")
        self.varies = np.asarray(varies, dtype=np.bool_)
        self.min_run = min_run
        self.factor = factor
        self.decay = decay
        self.warmup_runs = warmup_runs
        m = len(self.varies)
        self.last = np.full((0, m), np.nan)
        self.run = np.zeros((0, m), dtype=np.int64)
        self.typical = np.zeros((0, m))
        self.runs = np.zeros((0, m), dtype=np.int64)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.last = grow(self.last, capacity, np.nan)
        self.run = grow(self.run, capacity, 0)
        self.typical = grow(self.typical, capacity, 0.0)
        self.runs = grow(self.runs, capacity, 0)

    def limit(self, typical: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The run length at which a field counts as stuck."""
        return np.fmax(float(self.min_run), np.ceil(self.factor * typical))

    def step(
        self,
        rows: npt.NDArray[np.intp],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
        ref: npt.NDArray[np.int64],
    ) -> Findings:
        """Extend or close each present field's run of identical values and judge it."""
        last, run = self.last[rows], self.run[rows]
        typical, runs = self.typical[rows], self.runs[rows]
        same = present & (values == last)
        closed = present & ~same & (run > 0)
        learn = closed & (run < self.limit(typical))  # a flagged run would teach "normal"
        typical = np.where(learn, np.fmax(typical * self.decay, run), typical)
        runs = runs + learn
        run = np.where(same, run + 1, np.where(present, 1, run))
        self.last[rows] = np.where(present, values, last)
        self.run[rows], self.typical[rows], self.runs[rows] = run, typical, runs
        limit = self.limit(typical)
        judged = present & self.varies
        stuck = judged & (runs >= self.warmup_runs) & (run >= limit)
        score = np.clip(run / limit, 0.0, 1.0)
        r, f = np.nonzero(judged if self.report_all else stuck)
        return Findings(
            self.name,
            np.broadcast_to(ref[:, None], present.shape)[r, f],
            rows[r],
            f.astype(np.intp),
            ts[r],
            values[r, f],
            score[r, f],
            stuck[r, f],
        )
