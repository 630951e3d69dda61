"""Spikes: one reading far from both neighbours, against a robust running step size.

The test is the QARTOD spike test made adaptive: for a middle reading m between p (before)
and n (after), S = |m - (p + n)/2| - |n - p|/2, which is large only when m leaves and comes
back; a sustained rise or a daily cycle moves p, m and n together and scores low. The scale is
an EWMA of the absolute step between accepted readings, floored at the field's resolution, and
spikes are kept out of it. The decision needs the next reading: one reporting interval of delay.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings
from processors.detectors.protocol import DetectorBase, Report
from processors.state import Scratch, StateField, flat

__all__ = ["SpikeDetector"]


class SpikeDetector(DetectorBase):
    """Vectorised spike detector over (devices x fields).

    The middle reading of the window is the field's previous usable reading (`BatchView.last`,
    kept in processors.state.LastReading); this detector keeps the reading before it (`prev`,
    which skips dropped spikes) and the scale.
    """

    name = "spike"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("prev", np.nan),
        StateField("scale", np.nan),
        StateField("learned", 0),
    )
    reports: ClassVar[tuple[Report, ...]] = (Report("spike", "warning"),)

    def __init__(
        self,
        resolution: npt.ArrayLike,
        *,
        threshold: float = 10.0,
        alpha: float = 0.05,
        warmup: int = 10,
        report_all: bool = True,
    ) -> None:
        if threshold <= 0 or not 0 < alpha <= 1 or warmup < 0:
            raise ValueError("need threshold > 0, 0 < alpha <= 1, warmup >= 0")
        self.resolution = np.asarray(resolution, dtype=np.float64)
        self.threshold = threshold
        self.alpha = alpha
        self.warmup = warmup
        self.report_all = report_all
        m = len(self.resolution)
        self.prev = np.full((0, m), np.nan)
        self.scale = np.full((0, m), np.nan)
        self.learned = np.zeros((0, m), dtype=np.int64)
        self._scratch = Scratch()

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind: its fields' resolutions."""
        return cls(spec.resolutions(), report_all=report_all, **params)

    def process(self, batch: BatchView) -> list[Findings]:
        """Judge the middle reading of each window a new reading completes; learn the batch."""
        order, cells = batch.order, batch.cells
        prev, scale = np.take(self.prev, cells), np.take(self.scale, cells)
        learned = np.take(self.learned, cells)
        # One row per group, so the rounds need no broadcasting (a row per row is slow).
        resolution = np.tile(self.resolution[batch.columns], (len(order.rows), 1))
        values, mid, present = batch.values, batch.last, batch.present
        shape = values.shape
        # Per-cell results are written straight into these (out=), per round a slice.
        scratch = self._scratch
        s_all = scratch("s", shape)
        limit_all = scratch("limit", shape)
        spike_all = scratch("spike", shape, np.bool_)
        threshold, alpha, warmup = self.threshold, self.alpha, self.warmup
        # Steady state skips two selects per round: every window warm (learned counts only
        # grow) and every scale known (a known scale stays known).
        all_warm = bool((learned >= warmup).all())
        all_known = not np.isnan(scale).any()
        # Scratch for one round (the first is the largest), reused: no temporaries per round.
        half = scratch("half", prev.shape)
        step = scratch("step", prev.shape)
        floor = scratch("floor", prev.shape)
        learn = scratch("learn", prev.shape, np.bool_)
        complete = scratch("complete", prev.shape, np.bool_)
        bounds = order.bounds
        # NaN (no usable value) makes s NaN: not ready, and never a spike.
        with np.errstate(invalid="ignore"):
            for lo, hi in itertools.pairwise(bounds):
                n = hi - lo
                v, md, p, sc, ln = values[lo:hi], mid[lo:hi], prev[:n], scale[:n], learned[:n]
                s, limit, spike = s_all[lo:hi], limit_all[lo:hi], spike_all[lo:hi]
                h, st, fl, lr, ok = half[:n], step[:n], floor[:n], learn[:n], complete[:n]
                # s = |md - (p + v) / 2| - |v - p| / 2, the same operations in the same order
                # (halving by a product: x * 0.5 is exactly x / 2, and cheaper).
                np.add(p, v, out=h)
                np.multiply(h, 0.5, out=h)
                np.subtract(md, h, out=h)
                np.abs(h, out=s)
                np.subtract(v, p, out=h)
                np.abs(h, out=h)
                np.multiply(h, 0.5, out=h)
                np.subtract(s, h, out=s)
                np.fmax(sc, resolution[:n], out=fl)
                np.multiply(fl, threshold, out=limit)
                np.greater(s, limit, out=spike)
                if not all_warm:
                    warm = ln >= warmup
                    spike &= warm
                # Learn the step into the middle reading unless it was a spike (protect the
                # baseline). Zero steps are not learned: a quantised series that mostly repeats
                # itself would otherwise get a tiny scale and call every ordinary quantum step
                # a spike. Steps are winsorised at 3 scales so a noisy stretch cannot inflate
                # the scale in a few readings.
                np.subtract(md, p, out=st)
                np.abs(st, out=st)
                np.greater(st, 0.0, out=lr)
                np.equal(s, s, out=ok)  # the window is complete
                lr &= ok
                any_spike = bool(spike.any())
                if any_spike:
                    lr &= ~spike
                np.multiply(fl, 3.0, out=fl)
                np.fmin(st, fl, out=fl)  # the winsorised step
                if not all_warm:
                    np.copyto(fl, st, where=~warm)
                # The EWMA, sc + alpha * (winsorised - sc); an unknown scale starts at the step.
                np.subtract(fl, sc, out=h)
                np.multiply(h, alpha, out=h)
                np.add(h, sc, out=h)
                if not all_known:
                    np.copyto(h, fl, where=np.isnan(sc))
                if lr.all():  # the usual case: no masked select, no bool-to-int casts
                    sc[...] = h
                    ln += 1
                else:
                    np.copyto(sc, h, where=lr)
                    ln += lr
                # Shift: a spike is dropped from the window, as if it had not been read. (A
                # NaN middle only replaces a NaN prev: prev is only ever set from the middle.)
                here = present[lo:hi]
                if any_spike:
                    np.copyto(p, md, where=here & ~spike)
                elif here.all():
                    p[...] = md
                else:
                    np.copyto(p, md, where=here)
        flat_cells = cells.reshape(-1)
        flat(self.prev)[flat_cells] = prev.reshape(-1)
        flat(self.scale)[flat_cells] = scale.reshape(-1)
        flat(self.learned)[flat_cells] = learned.reshape(-1)
        # Every complete window, or only the spikes.
        at = np.flatnonzero(s_all == s_all if self.report_all else spike_all)
        with np.errstate(invalid="ignore"):
            score = np.clip(np.take(s_all, at) / (2.0 * np.take(limit_all, at)), 0.0, 1.0)
        return [
            batch.findings(
                self.name,
                at,
                score,
                np.take(spike_all, at),
                ts=np.take(batch.last_ts, at),
                value=np.take(mid, at),
                ref=np.take(batch.last_ref, at),
            )
        ]
