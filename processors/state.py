"""Per-device streaming state: a growable device table and batch ordering into rounds.

A batch may hold several readings of one device, out of order, and readings delivered twice.
`order_batch` sorts readings by device and observation time, drops repeats (same device and
time, within the batch or already processed) and lays the rest out round-major: round k holds
the k-th new reading of every device that has one, so each round updates all its devices at
once with no device appearing twice. Devices ("groups") are numbered by how many readings they
bring, most first, so round k's readings belong to groups 0..n_k-1 in that order: per-group
state kept as a (groups x ...) array is updated for a round through the slice [:n_k], with no
gather or scatter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["DeviceTable", "LastReading", "OrderedBatch", "grow", "order_batch"]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_I64 = npt.NDArray[np.int64]

# Multiplier of the polynomial hash of device ids (odd, so it mixes every code point).
_HASH_MUL: Final = np.uint64(0x9E3779B97F4A7C15)
_PROBES: Final = 4  # open-addressing probes tried vectorised before the dictionary fallback


def grow(array: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with its first axis extended to `capacity` rows of `fill`."""
    if array.shape[0] >= capacity:
        return array
    extra = np.full((capacity - array.shape[0], *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, extra])


def _hash_ids(ids: npt.NDArray[np.str_]) -> npt.NDArray[np.uint64]:
    """A 64-bit polynomial hash of each fixed-width id (its UCS-4 code points)."""
    width = ids.dtype.itemsize // 4
    codes = np.ascontiguousarray(ids).view(np.uint32).reshape(len(ids), width)
    acc = np.zeros(len(ids), dtype=np.uint64)
    for c in range(width):  # uint64 arithmetic wraps: a hash, not a number
        acc *= _HASH_MUL
        acc += codes[:, c]
    acc ^= acc >> np.uint64(29)
    return acc


class DeviceTable:
    """Device ids to dense row numbers, stable for the life of the state."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        # Vectorised lookup: an open-addressing table of id hashes -> row + 1 (0: empty), and
        # the ids as one array to check a hit against the real id (hashes can collide).
        self._slots_hash = np.zeros(0, dtype=np.uint64)
        self._slots_row = np.zeros(0, dtype=np.intp)
        self._id_array = np.zeros(0, dtype=str)
        self._indexed = 0  # rows [0, _indexed) are in the hash table and _id_array
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
        """Rows of many devices: vectorised hash lookups, the dictionary only for new ids."""
        ids = np.asarray(device_ids)
        if ids.dtype.kind != "U" or len(ids) == 0:
            return self._rows_by_dict(ids)
        ids = ids.reshape(-1)
        hashes = _hash_ids(ids)
        rows = self._lookup(hashes)
        found = rows >= 0
        # A hit must be the very id: compare the strings (cheap next to a Python loop).
        found[found] = self._id_array[rows[found]] == ids[found]
        if not found.all():
            missing = ~found
            rows[missing] = self._rows_by_dict(ids[missing])
            self._index()
        return rows

    def _rows_by_dict(self, ids: npt.NDArray[Any]) -> _Int:
        """Rows by one dictionary lookup per distinct id (adds new ids)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.intp)
        unique, inverse = np.unique(ids.astype(str), return_inverse=True)
        rows = np.fromiter((self.row(str(d)) for d in unique), dtype=np.intp, count=len(unique))
        return rows[inverse.reshape(-1)]

    def _lookup(self, hashes: npt.NDArray[np.uint64]) -> _Int:
        """Rows of hashes found in the table, -1 elsewhere."""
        rows = np.full(len(hashes), -1, dtype=np.intp)
        size = len(self._slots_hash)
        if size == 0:
            return rows
        mask = np.uint64(size - 1)
        slot = (hashes & mask).astype(np.intp)
        pending = np.arange(len(hashes))
        for _ in range(_PROBES):
            row = self._slots_row[slot]
            hit = (row > 0) & (self._slots_hash[slot] == hashes[pending])
            rows[pending[hit]] = row[hit] - 1
            more = ~hit & (row > 0)  # an occupied slot of another id: probe the next one
            pending, slot = pending[more], (slot[more] + 1) & (size - 1)
            if len(pending) == 0:
                break
        return rows

    def _index(self) -> None:
        """Add the rows not yet indexed to the hash table (rebuilt when it gets full)."""
        n = len(self._ids)
        if n == self._indexed:
            return
        self._id_array = np.array(self._ids, dtype=str)
        size = len(self._slots_hash)
        start = self._indexed
        if 2 * n > size:  # keep the load under a half: few probes
            size = max(64, 1 << (4 * n - 1).bit_length())
            self._slots_hash = np.zeros(size, dtype=np.uint64)
            self._slots_row = np.zeros(size, dtype=np.intp)
            start = 0
        hashes = _hash_ids(self._id_array[start:n])
        table_hash, table_row = self._slots_hash, self._slots_row
        for row, h in zip(range(start, n), hashes.tolist(), strict=True):
            slot = h & (size - 1)
            for _ in range(_PROBES):  # an id whose probes are all taken stays dictionary-only
                if table_row[slot] == 0:
                    table_hash[slot], table_row[slot] = h, row + 1
                    break
                slot = (slot + 1) & (size - 1)
        self._indexed = n

    def device_id(self, row: int) -> str:
        """The id of a row."""
        return self._ids[row]


@dataclass(frozen=True, slots=True)
class OrderedBatch:
    """Readings to learn from, round-major, and their groups (devices)."""

    index: _Int  # positions in the original batch of the kept readings, round-major
    rows: _Int  # device row of each group; groups by number of readings, most first
    bounds: list[int]  # round k is index[bounds[k]:bounds[k + 1]], group j at bounds[k] + j
    group: _Int  # group of each kept reading
    prev: _Int  # position of the same group's previous reading (-1 in round 0)
    last: _Int  # position of each group's newest reading

    @property
    def rounds(self) -> int:
        """Number of rounds."""
        return len(self.bounds) - 1

    def __len__(self) -> int:
        return len(self.index)


def order_batch(rows: _Int, ts: _Float, last_ts: _Float) -> OrderedBatch:
    """Sort by (device, ts); drop in-batch repeats and readings not newer than `last_ts[row]`.

    A reading at or before the newest time already processed for its device is a redelivery
    or a late arrival: sequential state must not move for it. Of repeats within the batch the
    first delivered is kept.
    """
    n = len(rows)
    # Time first (unstable is fine: repeats are resolved below), then a stable sort by row;
    # rows are dense, so a 16/32-bit key lets numpy use its faster integer sorts.
    by_time = np.argsort(ts)
    key = rows[by_time]
    if len(last_ts) < 1 << 16:
        key = key.astype(np.uint16)
    elif len(last_ts) < 1 << 31:
        key = key.astype(np.uint32)
    order = by_time[np.argsort(key, kind="stable")]
    r, t = rows[order], ts[order]
    with np.errstate(invalid="ignore"):
        fresh = ~(t <= last_ts[r])  # NaN last_ts (never seen) is fresh
    new_run = np.ones(n, dtype=np.bool_)
    new_run[1:] = (r[1:] != r[:-1]) | (t[1:] != t[:-1])
    if not new_run.all():  # repeats: keep the first delivered of each (device, time)
        starts = np.flatnonzero(new_run)
        order = np.minimum.reduceat(order, starts) if n else order
        r, fresh = r[starts], fresh[starts]
    kept = order[fresh]
    kept_rows = r[fresh]
    k = len(kept)
    if k == 0:
        empty = np.zeros(0, dtype=np.intp)
        return OrderedBatch(empty, empty, [0], empty, empty, empty)
    starts = np.flatnonzero(np.r_[True, kept_rows[1:] != kept_rows[:-1]])
    counts = np.diff(np.r_[starts, k])
    rank = np.arange(k) - np.repeat(starts, counts)
    # Groups by count, most first (stable: equal counts keep device order).
    if counts.min() == counts.max():
        by_count = np.arange(len(starts))
        group_of_start = by_count
    else:
        by_count = np.argsort(-counts, kind="stable")
        group_of_start = np.empty_like(by_count)
        group_of_start[by_count] = np.arange(len(by_count))
    counts_sorted = counts[by_count]
    # Round k holds the groups with more than k readings: a prefix of the groups.
    sizes = len(counts) - np.searchsorted(counts_sorted[::-1], np.arange(counts_sorted[0]), "right")
    bounds = np.r_[0, np.cumsum(sizes)]
    group = np.repeat(group_of_start, counts)
    position = bounds[rank] + group
    index = np.empty(k, dtype=np.intp)
    index[position] = kept
    by_position = np.empty(k, dtype=np.intp)
    by_position[position] = group
    prev = np.full(k, -1, dtype=np.intp)
    later = position[rank > 0]
    prev[later] = later - sizes[rank[rank > 0] - 1]
    last = bounds[counts_sorted - 1] + np.arange(len(counts_sorted))
    return OrderedBatch(
        index, kept_rows[starts][by_count], bounds.tolist(), by_position, prev, last
    )


class LastReading:
    """Per device and field, the newest usable reading: value, time and reference.

    Shared by the spike (the middle of its window), stuck (the value a run repeats) and rate
    (the reading to compare against) detectors, which all need the field's previous usable
    reading of each new one.
    """

    name = "last"

    def __init__(self, n_fields: int) -> None:
        self.value = np.full((0, n_fields), np.nan)
        self.ts = np.full((0, n_fields), np.nan)
        self.ref = np.full((0, n_fields), -1, dtype=np.int64)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.value = grow(self.value, capacity, np.nan)
        self.ts = grow(self.ts, capacity, np.nan)
        self.ref = grow(self.ref, capacity, -1)

    def advance(
        self,
        order: OrderedBatch,
        columns: _Int,
        ts: _Float,
        values: _Float,
        present: _Bool,
        ref: _I64,
    ) -> tuple[_Float, _Float, _I64]:
        """Each reading's previous usable (value, ts, ref) per field; learn the batch."""
        rows = order.rows
        cells = np.ix_(rows, columns)
        value, when, which = self.value[cells], self.ts[cells], self.ref[cells]
        last = np.empty_like(values)
        last_ts = np.empty_like(values)
        last_ref = np.empty(values.shape, dtype=np.int64)
        ts2 = np.broadcast_to(ts[:, None], values.shape)
        ref2 = np.broadcast_to(ref[:, None], values.shape)
        for lo, hi in zip(order.bounds[:-1], order.bounds[1:], strict=True):
            n, here = hi - lo, present[lo:hi]
            last[lo:hi], last_ts[lo:hi], last_ref[lo:hi] = value[:n], when[:n], which[:n]
            np.copyto(value[:n], values[lo:hi], where=here)
            np.copyto(when[:n], ts2[lo:hi], where=here)
            np.copyto(which[:n], ref2[lo:hi], where=here)
        self.value[cells], self.ts[cells], self.ref[cells] = value, when, which
        return last, last_ts, last_ref
