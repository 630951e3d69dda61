"""Stuck sensors: a field that should vary repeats one value far longer than it normally does.

Quantised sensors repeat values legitimately (a manual gauge at 10 cm for days), so the
threshold is learned per device and field: `factor` times a slowly decaying maximum of the
run lengths seen so far, and never below `min_run`. Runs that were flagged are not learned.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings, split_cells
from processors.detectors.protocol import DetectorBase, Report
from processors.state import Scratch, StateField, flat

__all__ = ["StuckDetector"]


class StuckDetector(DetectorBase):
    """Vectorised stuck/flat-line detector over (devices x fields)."""

    name = "stuck"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("run", 0),
        StateField("typical", 0.0),
        StateField("runs", 0),
    )
    reports: ClassVar[tuple[Report, ...]] = (Report("stuck", "warning"),)

    def __init__(
        self,
        varies: npt.ArrayLike,
        *,
        min_run: int = 6,
        factor: float = 3.0,
        decay: float = 0.999,
        warmup_runs: int = 20,
        report_all: bool = True,
    ) -> None:
        if min_run < 2 or factor < 1 or not 0 < decay <= 1:
            raise ValueError("need min_run >= 2, factor >= 1, 0 < decay <= 1")
        self.varies = np.asarray(varies, dtype=np.bool_)
        self.min_run = min_run
        self.factor = factor
        self.decay = decay
        self.warmup_runs = warmup_runs
        self.report_all = report_all
        m = len(self.varies)
        self.run = np.zeros((0, m), dtype=np.int64)
        self.typical = np.zeros((0, m))
        self.runs = np.zeros((0, m), dtype=np.int64)
        self._scratch = Scratch()

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind: which of its fields should vary."""
        return cls(spec.varies_mask(), report_all=report_all, **params)

    def limit(self, typical: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The run length at which a field counts as stuck."""
        return np.fmax(float(self.min_run), np.ceil(self.factor * typical))

    def process(self, batch: BatchView) -> list[Findings]:
        """Extend or close each usable field's run of identical values and judge it."""
        order, cells = batch.order, batch.cells
        # Counts as floats inside the loop: no int/float conversions per operation (exact).
        run = np.take(self.run, cells).astype(np.float64)
        typical = np.take(self.typical, cells)
        runs = np.take(self.runs, cells).astype(np.float64)
        values, present, last = batch.values, batch.present, batch.last
        shape = values.shape
        # Per cell after its reading: the run, its limit and the learned runs. Each round
        # continues from the previous round's cells (the same groups come first), so these
        # double as the state: no per-round copies.
        run_all = self._scratch("run", shape)
        limit_all = self._scratch("limit", shape)
        runs_all = self._scratch("runs", shape)
        min_run, factor, decay = float(self.min_run), self.factor, self.decay
        limit = np.fmax(min_run, np.ceil(factor * typical))
        floor = np.full(run.shape, min_run)  # an array: numpy is slower with a scalar here
        scratch = self._scratch("typical", run.shape)
        learn = self._scratch("learn", run.shape, np.bool_)
        changed = self._scratch("changed", run.shape, np.bool_)
        other = self._scratch("other", run.shape, np.bool_)
        bounds = order.bounds
        check = []  # rounds where a run may have reached its limit
        for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            n = hi - lo
            if k == 0:
                r0, lim0, rs0 = run[:n], limit[:n], runs[:n]
            else:
                src = slice(bounds[k - 1], bounds[k - 1] + n)
                r0, lim0, rs0 = run_all[src], limit_all[src], runs_all[src]
            v, lst, here, ty = values[lo:hi], last[lo:hi], present[lo:hi], typical[:n]
            r, lim, rs = run_all[lo:hi], limit_all[lo:hi], runs_all[lo:hi]
            lr, ne, b = learn[:n], changed[:n], other[:n]
            every_here = bool(here.all())
            # A usable value closing a run (not the value the run repeats) teaches the run's
            # length, unless the run was flagged: a flagged run would teach "normal". (With
            # a usable value, "not equal" is exactly "not the same value": NaN never is.)
            np.not_equal(v, lst, out=ne)
            np.greater(r0, 0.0, out=lr)
            lr &= ne
            if not every_here:
                lr &= here
            np.less(r0, lim0, out=b)
            lr &= b
            if lr.any():
                every = bool(lr.all())
                t = scratch[:n]
                np.multiply(ty, decay, out=t)
                np.fmax(t, r0, out=t)
                if every:
                    ty[...] = t
                else:
                    np.copyto(ty, t, where=lr)
                # The limit is always fmax(min_run, ceil(factor * typical)): recomputing it
                # where typical did not change gives the value it had.
                np.multiply(ty, factor, out=lim)
                np.ceil(lim, out=lim)
                np.fmax(lim, floor[:n], out=lim)
                if every:
                    np.add(rs0, 1.0, out=rs)
                else:
                    np.add(rs0, lr, out=rs)
            else:
                lim[...] = lim0
                rs[...] = rs0
            if ne.all():  # every value changed: every run starts anew (none at its limit)
                r[...] = 1.0
            else:
                np.equal(v, lst, out=b)  # same value: the run goes on, else a new one starts
                np.multiply(b, r0, out=r)
                r += 1.0
                check.append((lo, hi))
            if not every_here:
                np.copyto(r, r0, where=~here)
                check.append((lo, hi))
        newest = order.last
        flat_cells = cells.reshape(-1)
        flat(self.run)[flat_cells] = np.take(run_all, newest, axis=0).reshape(-1)
        flat(self.typical)[flat_cells] = typical.reshape(-1)
        flat(self.runs)[flat_cells] = np.take(runs_all, newest, axis=0).reshape(-1)
        varies = self.varies[batch.columns]
        if self.report_all:
            judged = present & varies
            at = np.flatnonzero(judged)
            run_at, limit_at = np.take(run_all, at), np.take(limit_all, at)
            stuck = (np.take(runs_all, at) >= self.warmup_runs) & (run_at >= limit_at)
        else:
            # A run at its limit is rare: judge only those cells, in the rounds that may have
            # some (limits are at least min_run >= 2, so a run of 1 is never at its limit).
            width = shape[1]
            parts = [
                np.flatnonzero(run_all[lo:hi] >= limit_all[lo:hi]) + lo * width
                for lo, hi in dict.fromkeys(check)
            ]
            at = np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)
            run_at, limit_at = np.take(run_all, at), np.take(limit_all, at)
            stuck = np.take(present, at) & (np.take(runs_all, at) >= self.warmup_runs)
            stuck &= np.take(varies, split_cells(at, len(varies))[1])
            at, run_at, limit_at = at[stuck], run_at[stuck], limit_at[stuck]
            stuck = stuck[stuck]
        score = np.clip(run_at / limit_at, 0.0, 1.0)
        return [batch.findings(self.name, at, score, stuck)]
