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

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DeviceTable",
    "LastReading",
    "OrderedBatch",
    "RowOperand",
    "Scratch",
    "cell_index",
    "columns_any",
    "differs_from",
    "flat",
    "grow",
    "order_batch",
]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_I64 = npt.NDArray[np.int64]

_MASK64: Final = (1 << 64) - 1
# fmix64 (MurmurHash3's finaliser): every input bit reaches the low bits the slots are taken
# from, so ids that differ only in their last characters do not land in adjacent slots.
_FMIX: Final = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def _word_multiplier(j: int) -> np.uint64:
    """The odd multiplier of the j-th 64-bit word of an id (distinct per position)."""
    return np.uint64(((0x9E3779B97F4A7C15 * (2 * j + 1)) ^ (j * 0xBF58476D1CE4E5B9)) & _MASK64 | 1)


def grow(array: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with its first axis extended to `capacity` rows of `fill`."""
    if array.shape[0] >= capacity:
        return array
    extra = np.full((capacity - array.shape[0], *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, extra])


def _codes(ids: npt.NDArray[np.str_]) -> npt.NDArray[np.uint32]:
    """Fixed-width ids as rows of UCS-4 code points (a view where possible)."""
    width = ids.dtype.itemsize // 4
    codes: npt.NDArray[np.uint32] = (
        np.ascontiguousarray(ids).view(np.uint32).reshape(len(ids), width)
    )
    return codes


def _latin1(codes: npt.NDArray[np.uint32]) -> bool:
    """Whether every code point fits in a byte."""
    return codes.size == 0 or int(codes.max()) < 256


def _id_words(ids: npt.NDArray[np.str_], narrow: bool = False) -> npt.NDArray[np.uint64]:
    """Fixed-width ids as rows of 64-bit words, zero-padded.

    Two UCS-4 code points per word, or with `narrow` (Latin-1 ids only) eight characters
    of a byte each: a quarter of the words to hash, gather and compare. Trailing zero code
    points are numpy's padding, so an id gives the same non-zero words whatever the width
    of the array it comes in.
    """
    codes: npt.NDArray[Any] = _codes(ids)
    if narrow:
        codes = codes.astype(np.uint8)
    width, per_word = codes.shape[1], 8 // codes.itemsize
    if width % per_word:  # zero code points up to a whole word (the padding numpy would add)
        padded = np.zeros((len(ids), width + per_word - width % per_word), dtype=codes.dtype)
        padded[:, :width] = codes
        codes = padded
    return codes.view(np.uint64)


def _hash_words(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A 64-bit hash per row of words; zero words add nothing, so padding does not matter."""
    acc = np.zeros(len(words), dtype=np.uint64)
    term = np.empty(len(words), dtype=np.uint64)
    for j in range(words.shape[1]):  # uint64 arithmetic wraps: a hash, not a number
        np.multiply(words[:, j], _word_multiplier(j), out=term)
        acc += term
    for mul in _FMIX:
        acc ^= acc >> np.uint64(33)
        acc *= mul
    acc ^= acc >> np.uint64(33)
    return acc


def differs_from(ids: npt.NDArray[Any], at: _Int) -> _Bool:
    """Whether each id differs from the id at position `at[i]` of the same array.

    Fixed-width strings compare as their code points, all at once (numpy's own string
    comparison is several times slower); differences are few, so their rows are found from
    the differing code points.
    """
    if ids.dtype.kind != "U":
        result: _Bool = np.asarray(ids != ids[at], dtype=np.bool_)
        return result
    codes: npt.NDArray[Any] = _codes(ids)
    width = codes.shape[1]
    if _latin1(codes):
        # Latin-1 ids as bytes: the same equality, and one sequential pass over the ids
        # leaves a quarter of the memory to gather from at random.
        codes = codes.astype(np.uint8)
    differ = np.zeros(len(ids), dtype=np.bool_)
    differ[np.flatnonzero(codes != np.take(codes, at, axis=0)) // max(width, 1)] = True
    return differ


def _rows_all(mask: _Bool) -> _Bool:
    """Per row of a C-contiguous 2-D mask, whether all entries are set.

    A row's flag bytes read as one or a few integers compare at once: numpy's all(axis=1)
    over short rows is several times slower.
    """
    width = mask.shape[1]
    if width == 0:
        return np.ones(len(mask), dtype=np.bool_)
    size = next(k for k in (8, 4, 2, 1) if width % k == 0)
    kind = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}[size]
    ones = kind(int.from_bytes(b"\x01" * size, "little"))
    chunks = np.ascontiguousarray(mask).view(kind)
    result: _Bool = chunks[:, 0] == ones
    for j in range(1, chunks.shape[1]):
        result &= chunks[:, j] == ones
    return result


class DeviceTable:
    """Device ids to dense row numbers, stable for the life of the state."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        # Vectorised lookup: an open-addressing table (linear probing, load under a half) of
        # id hashes -> row + 1 (0: empty), and every indexed id as 64-bit words to check a hit
        # against the real id (hashes can collide).
        # One (hash, row + 1) pair per slot: a lookup reads one cache line, not two.
        self._slots = np.zeros((0, 2), dtype=np.uint64)
        self._words = np.zeros((0, 0), dtype=np.uint64)
        self._indexed = 0  # rows [0, _indexed) are in the hash table and _words
        self._narrow = True  # words of a byte per character: every id is Latin-1 (see _id_words)
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
        if self._narrow and not _latin1(_codes(ids)):
            # New ids (the table's are all Latin-1): looked up as in the dictionary, then the
            # table is indexed anew in the wide words.
            rows = self._rows_by_dict(ids)
            self._index()
            return rows
        words = _id_words(ids, self._narrow)
        rows = self._lookup(_hash_words(words))
        # A hit must be the very id: compare its words (cheap next to a Python loop).
        found = self._same_ids(rows, words)
        if not found.all():
            missing = ~found
            rows[missing] = self._rows_by_dict(ids[missing])
            self._index()
        return rows

    def _same_ids(self, rows: _Int, words: npt.NDArray[np.uint64]) -> _Bool:
        """Whether each row (-1: none) holds the id given as `words`."""
        found = rows >= 0
        if len(self._words) == 0:
            return found
        stored = np.take(self._words, rows if found.all() else np.where(found, rows, 0), axis=0)
        width = stored.shape[1]
        if width == words.shape[1]:
            found &= _rows_all(np.equal(stored, words))
            return found
        for j in range(max(width, words.shape[1])):
            # A word only one side has must be zero padding on the other.
            if j >= words.shape[1]:
                found &= stored[:, j] == 0
            elif j >= width:
                found &= words[:, j] == 0
            else:
                found &= stored[:, j] == words[:, j]
        return found

    def _rows_by_dict(self, ids: npt.NDArray[Any]) -> _Int:
        """Rows by one dictionary lookup per distinct id (adds new ids)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.intp)
        unique, inverse = np.unique(ids.astype(str), return_inverse=True)
        rows = np.fromiter((self.row(str(d)) for d in unique), dtype=np.intp, count=len(unique))
        return rows[inverse.reshape(-1)]

    def _lookup(self, hashes: npt.NDArray[np.uint64]) -> _Int:
        """Rows of hashes found in the table, -1 elsewhere."""
        size = len(self._slots)
        if size == 0:
            return np.full(len(hashes), -1, dtype=np.intp)
        slot = (hashes & np.uint64(size - 1)).astype(np.intp)
        entry = np.take(self._slots, slot, axis=0)
        row = entry[:, 1].astype(np.intp)
        hit = entry[:, 0] == hashes
        rows = row - 1  # -1 for an empty slot: not in the table
        # An occupied slot of another id: probe the next one (few do at a load under a half).
        pending = np.flatnonzero(~hit & (row > 0))
        rows[pending] = -1
        slot = slot[pending]
        while len(pending):
            slot = (slot + 1) & (size - 1)
            entry = np.take(self._slots, slot, axis=0)
            row = entry[:, 1].astype(np.intp)
            hit = (row > 0) & (entry[:, 0] == hashes[pending])
            rows[pending[hit]] = row[hit] - 1
            more = ~hit & (row > 0)
            pending, slot = pending[more], slot[more]
        return rows

    def _index(self) -> None:
        """Add the rows not yet indexed to the hash table (rebuilt when it gets full)."""
        n = len(self._ids)
        if n == self._indexed:
            return
        ids = np.array(self._ids, dtype=str)
        narrow = self._narrow and _latin1(_codes(ids))
        self._words = _id_words(ids, narrow)
        size = len(self._slots)
        start = self._indexed
        # Rebuilt when full (keeping the load under a half: few probes, and always an empty
        # slot) or when the words change (a first id that is not Latin-1).
        if 2 * n > size or narrow != self._narrow:
            size = max(64, 1 << (4 * n - 1).bit_length())
            self._slots = np.zeros((size, 2), dtype=np.uint64)
            start = 0
        self._narrow = narrow
        hashes = _hash_words(self._words[start:n])
        # Filled in Python (once per new id), then stored at once.
        occupied = (self._slots[:, 1] != 0).tolist()
        slots, entries = [], []
        for row, h in zip(range(start, n), hashes.tolist(), strict=True):
            slot = h & (size - 1)
            while occupied[slot]:
                slot = (slot + 1) & (size - 1)
            occupied[slot] = True
            slots.append(slot)
            entries.append((h, row + 1))
        if slots:
            self._slots[slots] = np.array(entries, dtype=np.uint64)
        self._indexed = n

    def device_id(self, row: int) -> str:
        """The id of a row."""
        return self._ids[row]


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
        self._scratch = Scratch()

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        self.value = grow(self.value, capacity, np.nan)
        self.ts = grow(self.ts, capacity, np.nan)
        self.ref = grow(self.ref, capacity, -1)

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
