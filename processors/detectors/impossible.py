"""Physically impossible readings: present but outside the catalog's valid range.

`PhysicalRange` decides which readings are usable at all (the bank leaves the others out of
every detector's learning); `ImpossibleDetector` reports the present ones it rejects, of the
batch as delivered (redeliveries included).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings, split_cells
from processors.detectors.protocol import DetectorBase, Report
from processors.state import RowOperand, Scratch

__all__ = ["ImpossibleDetector", "PhysicalRange"]

_Bool = npt.NDArray[np.bool_]


class PhysicalRange:
    """A kind's physical valid range per field, applied to whole batches."""

    def __init__(self, spec: KindSpec) -> None:
        lows, highs = spec.lows(), spec.highs()
        self._low_row, self._high_row = RowOperand(lows), RowOperand(highs)
        self._bounded = bool(np.isfinite(lows).all() and np.isfinite(highs).all())
        self._scratch = Scratch()  # valid until the next batch

    def usable(self, values: npt.NDArray[np.float64], present: _Bool) -> _Bool:
        """Present and physically possible, per reading and field."""
        scratch = self._scratch
        # Within finite bounds implies finite (and NaN compares False), so the finiteness
        # pass is only needed for infinite bounds.
        ok = scratch("ok", values.shape, np.bool_)
        within = scratch("in", values.shape, np.bool_)
        with np.errstate(invalid="ignore"):
            self._low_row.apply(np.greater_equal, values, ok)
            self._high_row.apply(np.less_equal, values, within)
            ok &= within
            if not self._bounded:
                ok &= np.isfinite(values, out=within)
        ok &= present
        return ok


class ImpossibleDetector(DetectorBase):
    """Readings outside the physical range (no state: a reading is judged on its own)."""

    name = "impossible"
    reports: ClassVar[tuple[Report, ...]] = (Report("impossible", "critical"),)
    fresh_only = False  # every reading as delivered, repeats and late ones too

    def __init__(self, *, report_all: bool = True) -> None:
        self.report_all = report_all
        self._scratch = Scratch()

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector (the range itself is the batch's: see PhysicalRange)."""
        return cls(report_all=report_all, **params)

    def process(self, batch: BatchView) -> list[Findings]:
        """Every present reading (or only the impossible ones) of the batch as delivered."""
        readings = batch.readings
        present, values = readings.present, readings.values
        # Present and not possible (usable is within present).
        impossible = np.bitwise_xor(
            present, readings.usable, out=self._scratch("bad", values.shape, np.bool_)
        )
        # Flat positions: numpy's 2-D nonzero is several times slower than flatnonzero.
        at = np.flatnonzero(present if self.report_all else impossible)
        r, f = split_cells(at, values.shape[1])
        bad = np.take(impossible, at)
        return [
            Findings(
                self.name,
                r.astype(np.int64),
                readings.rows[r],
                f.astype(np.intp),
                readings.ts[r],
                np.take(values, at),
                bad.astype(np.float64),
                bad,
            )
        ]
