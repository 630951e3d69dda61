"""Stuck sensors: a field that should vary repeats one value far longer than it normally does.

Quantised sensors repeat values legitimately (a manual gauge at 10 cm for days), so the
threshold is learned per device and field: `factor` times a slowly decaying maximum of the
run lengths seen so far, and never below `min_run`. Runs that were flagged are not learned.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.detectors.base import BatchView, Findings
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
        self.run = np.zeros((0, m), dtype=np.int64)
        self.typical = np.zeros((0, m))
        self.runs = np.zeros((0, m), dtype=np.int64)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.run = grow(self.run, capacity, 0)
        self.typical = grow(self.typical, capacity, 0.0)
        self.runs = grow(self.runs, capacity, 0)

    def limit(self, typical: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The run length at which a field counts as stuck."""
        return np.fmax(float(self.min_run), np.ceil(self.factor * typical))

    def process(self, batch: BatchView) -> Findings:
        """Extend or close each usable field's run of identical values and judge it."""
        order, columns = batch.order, batch.columns
        cells = np.ix_(order.rows, columns)
        run, typical, runs = self.run[cells], self.typical[cells], self.runs[cells]
        values, present = batch.values, batch.present
        # The value a run repeats is the field's previous usable value (processors.state).
        same = values == batch.last
        closing = present & ~same
        shape = values.shape
        run_all = np.empty(shape)
        limit_all = np.empty(shape)
        runs_all = np.empty(shape)
        min_run, factor, decay = float(self.min_run), self.factor, self.decay
        # Counts as floats inside the loop: no int/float conversions per operation (exact).
        run, runs = run.astype(np.float64), runs.astype(np.float64)
        limit = np.fmax(min_run, np.ceil(factor * typical))
        for lo, hi in zip(order.bounds[:-1], order.bounds[1:], strict=True):
            n = hi - lo
            r, ty, rs, lim = run[:n], typical[:n], runs[:n], limit[:n]
            learn = closing[lo:hi] & (r > 0) & (r < lim)  # a flagged run would teach "normal"
            if learn.any():
                np.copyto(ty, np.fmax(ty * decay, r), where=learn)
                np.copyto(lim, np.fmax(min_run, np.ceil(factor * ty)), where=learn)
                rs += learn
            np.copyto(r, same[lo:hi] * r + 1.0, where=present[lo:hi])  # same: r + 1, else 1
            run_all[lo:hi], limit_all[lo:hi], runs_all[lo:hi] = r, lim, rs
        self.run[cells], self.typical[cells] = run, typical
        self.runs[cells] = runs
        judged = present & self.varies[columns]
        stuck = judged & (runs_all >= self.warmup_runs) & (run_all >= limit_all)
        cell = np.nonzero(judged if self.report_all else stuck)
        score = np.clip(run_all[cell] / limit_all[cell], 0.0, 1.0)
        return batch.findings(self.name, cell, score, stuck[cell])
