"""Per-device streaming state: a growable device table and batch ordering into rounds.

A batch may hold several readings of one device, out of order, and readings delivered twice.
`order_batch` sorts readings by device and observation time, drops repeats (same device and
time, within the batch or already processed) and splits the rest into rounds: round k holds
the k-th new reading of every device, so each round updates all its devices at once with no
device appearing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DeviceTable", "OrderedBatch", "grow", "order_batch"]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]


def grow(array: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with its first axis extended to `capacity` rows of `fill`."""
    if array.shape[0] >= capacity:
        return array
    extra = np.full((capacity - array.shape[0], *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, extra])


class DeviceTable:
    """Device ids to dense row numbers, stable for the life of the state."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        for device_id in ids:
            self.row(device_id)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        """Device ids in row order."""
        return list(self._ids)

    def row(self, device_id: str) -> int:
        """The row of a device, adding it if new."""
        row = self._rows.get(device_id)
        if row is None:
            row = len(self._ids)
            self._rows[device_id] = row
            self._ids.append(device_id)
        return row

    def rows(self, device_ids: npt.ArrayLike) -> _Int:
        """Rows of many devices: one dictionary lookup per distinct device, not per reading."""
        unique, inverse = np.unique(np.asarray(device_ids), return_inverse=True)
        rows = np.fromiter((self.row(str(d)) for d in unique), dtype=np.intp, count=len(unique))
        return rows[inverse.reshape(-1)]

    def device_id(self, row: int) -> str:
        """The id of a row."""
        return self._ids[row]


@dataclass(frozen=True, slots=True)
class OrderedBatch:
    """Readings to learn from, in (device, time) order, and their rounds."""

    index: _Int  # positions in the original batch, sorted by (row, ts)
    rounds: list[_Int]  # positions into `index`, one array per round


def order_batch(rows: _Int, ts: _Float, last_ts: _Float) -> OrderedBatch:
    """Sort by (device, ts); drop in-batch repeats and readings not newer than `last_ts[row]`.

    A reading at or before the newest time already processed for its device is a redelivery
    or a late arrival: sequential state must not move for it.
    """
    order = np.lexsort((ts, rows))
    r, t = rows[order], ts[order]
    fresh = t > last_ts[r]  # NaN last_ts (never seen) compares False: fix below
    fresh |= np.isnan(last_ts[r])
    repeat = np.zeros(len(order), dtype=np.bool_)
    repeat[1:] = (r[1:] == r[:-1]) & (t[1:] == t[:-1])
    keep = fresh & ~repeat
    index = order[keep]
    kept_rows = r[keep]
    if len(index) == 0:
        return OrderedBatch(index, [])
    # Rank of each reading within its device: position minus the start of its device's run.
    starts = np.flatnonzero(np.r_[True, kept_rows[1:] != kept_rows[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(kept_rows)]))
    rank = np.arange(len(kept_rows)) - run_start
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
    rounds = [by_rank[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]
    return OrderedBatch(index, [r_ for r_ in rounds if len(r_)])
