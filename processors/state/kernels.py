"""Numpy kernels shared by the per-device state: growing, cell positions, masks, buffers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RowOperand", "Scratch", "cell_index", "columns_any", "flat", "grow"]

_Int = npt.NDArray[np.intp]
_Bool = npt.NDArray[np.bool_]


def grow(array: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with its first axis extended to `capacity` rows of `fill`."""
    if array.shape[0] >= capacity:
        return array
    extra = np.full((capacity - array.shape[0], *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, extra])


def cell_index(rows: _Int, columns: _Int, width: int) -> _Int:
    """Flat positions of the cells (rows x columns) in a C-ordered (devices x width) array."""
    cells: _Int = rows[:, None] * width + columns
    return cells


def flat(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A 1-D view of a C-contiguous state array (ValueError rather than a silent copy)."""
    if not array.flags.c_contiguous:
        raise ValueError("state arrays are C-contiguous: a reshaped copy would lose writes")
    return array.reshape(-1)


def columns_any(mask: _Bool) -> _Bool:
    """Per column of a 2-D mask, whether any entry is set.

    One column at a time: numpy's any(axis=0) walks a narrow C-ordered mask row by row,
    an order of magnitude slower.
    """
    return np.array([bool(mask[:, j].any()) for j in range(mask.shape[1])], dtype=np.bool_)


class RowOperand:
    """A per-column row (bounds, limits) to combine with (rows x columns) arrays quickly.

    numpy broadcasts a short row with one inner loop per row of the other operand, several
    times slower than an operation on two arrays of one shape; this combines chunk by chunk
    with a tiled copy of the row instead (a row of one repeated value is just a scalar).
    """

    _CHUNK = 2048  # rows per operation: the tile stays in cache

    def __init__(self, row: npt.ArrayLike) -> None:
        self.row = np.asarray(row)
        self._scalar = len(self.row) > 0 and bool((self.row == self.row[0]).all())
        self._tile = np.tile(self.row, (self._CHUNK, 1))

    def apply(self, ufunc: np.ufunc, values: npt.NDArray[Any], out: npt.NDArray[Any]) -> None:
        """Write ufunc(values, row) into `out`, for every row of `values`."""
        if self._scalar:
            ufunc(values, self.row[0], out=out)
            return
        chunk = self._CHUNK
        for lo in range(0, len(values), chunk):
            hi = min(lo + chunk, len(values))
            ufunc(values[lo:hi], self._tile[: hi - lo], out=out[lo:hi])


class Scratch:
    """Named buffers reused from batch to batch, for arrays that live only within one batch.

    A fresh array of a few megabytes costs page faults on its first writes (the allocator
    hands large freed blocks back to the system), as much as a few passes over it; reused
    buffers are already mapped. A buffer is valid until the same name is asked for again:
    nothing taken from one may outlive the call that took it.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, npt.NDArray[Any]] = {}

    def __call__(
        self, name: str, shape: tuple[int, ...], dtype: npt.DTypeLike = np.float64
    ) -> npt.NDArray[Any]:
        """An uninitialised C-contiguous array of `shape` in the buffer `name`."""
        size = math.prod(shape)
        kind = np.dtype(dtype)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != kind or buffer.size < size:
            # Some headroom: batch sizes vary a little, and a regrown buffer is fresh memory.
            buffer = np.empty(size + size // 4, dtype=kind)
            self._buffers[name] = buffer
        return buffer[:size].reshape(shape)
