"""Batch ordering: readings sorted by device and time, repeats dropped, laid out in rounds.

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["OrderedBatch", "order_batch"]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]


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
    # Time first (unstable is fine: repeats are resolved below), then a stable sort by row;
    # rows are dense, so a 16/32-bit key lets numpy use its faster integer sorts.
    # (np.take: faster than fancy indexing for 1-D gathers.)
    small: npt.NDArray[Any] = rows
    if len(last_ts) < 1 << 16:
        small = rows.astype(np.uint16)
    elif len(last_ts) < 1 << 31:
        small = rows.astype(np.uint32)
    by_time = np.argsort(ts)
    key = np.take(small, by_time)
    by_row = np.argsort(key, kind="stable")
    order = np.take(by_time, by_row)
    r, t = np.take(key, by_row), np.take(ts, order)  # rows (as the small key) and times
    with np.errstate(invalid="ignore"):
        keep = ~(t <= np.take(last_ts, r))  # NaN last_ts (never seen) is fresh
    repeat = (r[1:] == r[:-1]) & (t[1:] == t[:-1])  # position i + 1 repeats position i
    if repeat.any():
        _first_delivered(order, np.flatnonzero(repeat) + 1)
        keep[1:] &= ~repeat
    kept = order[keep]
    kept_rows = r[keep]
    k = len(kept)
    if k == 0:
        empty = np.zeros(0, dtype=np.intp)
        return OrderedBatch(empty, empty, [0], empty, empty, empty)
    new_row = np.empty(k, dtype=np.bool_)
    new_row[0] = True
    np.not_equal(kept_rows[1:], kept_rows[:-1], out=new_row[1:])
    starts = np.flatnonzero(new_row)
    counts = np.diff(np.r_[starts, k])
    groups = len(starts)
    positions = np.arange(k)
    if counts.min() == counts.max():
        # Every device brings as many readings (the usual live batch): the round-major layout
        # is the transpose of the device-major one, with no sorting or scattering.
        c = int(counts[0])
        index = kept.reshape(groups, c).T.ravel()
        prev = positions - groups
        prev[:groups] = -1
        return OrderedBatch(
            index,
            kept_rows[starts].astype(np.intp),
            list(range(0, k + 1, groups)),
            np.tile(np.arange(groups), c),
            prev,
            positions[k - groups :],
        )
    rank = positions - np.repeat(starts, counts)
    # Groups by count, most first (stable: equal counts keep device order).
    by_count = np.argsort(-counts, kind="stable")
    group_of_start = np.empty_like(by_count)
    group_of_start[by_count] = np.arange(groups)
    counts_sorted = counts[by_count]
    # Round k holds the groups with more than k readings: a prefix of the groups.
    sizes = groups - np.searchsorted(counts_sorted[::-1], np.arange(counts_sorted[0]), "right")
    bounds = np.r_[0, np.cumsum(sizes)]
    index = np.empty(k, dtype=np.intp)
    index[bounds[rank] + np.repeat(group_of_start, counts)] = kept
    # Round j's positions hold groups 0..sizes[j]-1; a group's previous reading is one round
    # (sizes[j - 1] positions) back.
    group = positions - np.repeat(bounds[:-1], sizes)
    prev = positions - np.repeat(np.r_[0, sizes[:-1]], sizes)
    prev[: sizes[0]] = -1
    last = bounds[counts_sorted - 1] + np.arange(groups)
    rows_of_groups = kept_rows[starts][by_count].astype(np.intp)
    return OrderedBatch(index, rows_of_groups, bounds.tolist(), group, prev, last)


def _first_delivered(order: _Int, repeats: _Int) -> None:
    """Fold each run of repeats into its first position: the earliest delivered (in place).

    `repeats` are the positions (sorted) that repeat the previous position's (device, time).
    Runs are folded from their ends backwards, one step for all runs at once.
    """
    is_repeat = np.zeros(len(order) + 1, dtype=np.bool_)
    is_repeat[repeats] = True
    ends = repeats[~is_repeat[repeats + 1]]
    while len(ends):
        order[ends - 1] = np.minimum(order[ends - 1], order[ends])
        ends = ends - 1
        ends = ends[is_repeat[ends]]
