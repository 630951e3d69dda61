"""The newest usable reading of every device and field, shared by several detectors."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from processors.state.kernels import Scratch, flat
from processors.state.ordering import OrderedBatch
from processors.state.saved import SavedState, StateField

__all__ = ["LastReading"]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_I64 = npt.NDArray[np.int64]


class LastReading(SavedState):
    """Per device and field, the newest usable reading: value, time and reference.

    Shared by the spike (the middle of its window), stuck (the value a run repeats) and rate
    (the reading to compare against) detectors, which all need the field's previous usable
    reading of each new one.
    """

    name = "last"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("value", np.nan),
        StateField("ts", np.nan),
        StateField("ref", -1),
    )

    def __init__(self, n_fields: int) -> None:
        self.value = np.full((0, n_fields), np.nan)
        self.ts = np.full((0, n_fields), np.nan)
        self.ref = np.full((0, n_fields), -1, dtype=np.int64)
        self._scratch = Scratch()

    def advance(
        self,
        order: OrderedBatch,
        cells: _Int,
        ts: _Float,
        values: _Float,
        present: _Bool,
        ref: _I64,
    ) -> tuple[_Float, _Float, _I64]:
        """Each reading's previous usable (value, ts, ref) per field; learn the batch.

        `cells` are the flat positions (groups x fields, see `cell_index`) of the batch's
        fields in the state arrays.
        """
        shape = values.shape
        last = self._scratch("value", shape)
        last_ts = self._scratch("ts", shape)
        last_ref = self._scratch("ref", shape, np.int64)
        bounds = order.bounds
        # Round 0 continues from the stored state; round k from round k - 1, whose first
        # n_k positions are the same groups: the previous reading is one round back, a slice.
        first = bounds[1]
        last[:first] = np.take(self.value, cells)
        last_ts[:first] = np.take(self.ts, cells)
        last_ref[:first] = np.take(self.ref, cells)
        ts2, ref2 = ts[:, None], ref[:, None]
        for k in range(1, len(bounds) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            src = slice(bounds[k - 1], bounds[k - 1] + hi - lo)
            here = present[src]
            if here.all():  # the usual case: plain copies, no masked selects
                last[lo:hi], last_ts[lo:hi], last_ref[lo:hi] = values[src], ts2[src], ref2[src]
            else:  # the previous reading's, where it had a usable value
                last[lo:hi], last_ts[lo:hi] = last[src], last_ts[src]
                last_ref[lo:hi] = last_ref[src]
                np.copyto(last[lo:hi], values[src], where=here)
                np.copyto(last_ts[lo:hi], ts2[src], where=here)
                np.copyto(last_ref[lo:hi], ref2[src], where=here)
        # The state after each group's last reading.
        newest = order.last
        here = np.take(present, newest, axis=0)
        flat_cells = cells.reshape(-1)
        after = np.take(last, newest, axis=0)
        np.copyto(after, np.take(values, newest, axis=0), where=here)
        flat(self.value)[flat_cells] = after.reshape(-1)
        after = np.take(last_ts, newest, axis=0)
        np.copyto(after, ts2[newest], where=here)
        flat(self.ts)[flat_cells] = after.reshape(-1)
        after_ref = np.take(last_ref, newest, axis=0)
        np.copyto(after_ref, ref2[newest], where=here)
        flat(self.ref)[flat_cells] = after_ref.reshape(-1)
        return last, last_ts, last_ref
