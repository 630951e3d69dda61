"""The device table: device ids to dense, stable row numbers, looked up vectorised."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["DeviceTable", "differs_from"]

_Int = npt.NDArray[np.intp]
_Bool = npt.NDArray[np.bool_]

_MASK64: Final = (1 << 64) - 1
# fmix64 (MurmurHash3's finaliser): every input bit reaches the low bits the slots are taken
# from, so ids that differ only in their last characters do not land in adjacent slots.
_FMIX: Final = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def _word_multiplier(j: int) -> np.uint64:
    """The odd multiplier of the j-th 64-bit word of an id (distinct per position)."""
    return np.uint64(((0x9E3779B97F4A7C15 * (2 * j + 1)) ^ (j * 0xBF58476D1CE4E5B9)) & _MASK64 | 1)


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
