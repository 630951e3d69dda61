"""A durable local spool: append-only segment files of checksummed, fsynced line-protocol batches.

Used while InfluxDB is down, slow or failing. A batch is acknowledged to the broker once its
record is fsynced here; records are replayed oldest first and a segment file is deleted once
every record in it is in InfluxDB. A crash mid-replay replays that segment again from its start,
which is harmless: points are idempotent (same series, same timestamp). A torn record at the end
of the last segment (a crash mid-append) was never acknowledged, so it is cut off at start-up.

Record layout: magic b"PSP1" | u32 body length | u32 readings | u32 CRC-32 of the body | body.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Self

__all__ = ["Spool", "SpoolError", "SpoolFullError", "SpoolRecord"]

log = logging.getLogger(__name__)

_MAGIC: Final = b"PSP1"
_HEADER: Final = struct.Struct("<4sIII")
_SUFFIX: Final = ".seg"


class SpoolError(Exception):
    """The spool cannot be used (locked by another collector, unreadable)."""


class SpoolFullError(SpoolError):
    """Appending would exceed the spool's size bound."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled batch, in append order."""

    segment: int
    offset: int
    readings: int
    body: bytes


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int
    records: list[tuple[int, int]]  # (offset, readings) of each unreplayed record


class Spool:
    """A bounded, crash-safe FIFO of byte records on local disk; one process at a time."""

    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = 16 * 1024 * 1024
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = (directory / "LOCK").open("a+b")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolError(f"spool {directory} is in use by another collector") from None
        self._segments: list[_Segment] = []
        self._writer: BinaryIO | None = None
        self._recover()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the active segment and release the lock."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._lock.close()

    # -- state -----------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes on disk held by the spool's segments."""
        return sum(s.size for s in self._segments)

    @property
    def records(self) -> int:
        """Records not yet replayed."""
        return sum(len(s.records) for s in self._segments)

    @property
    def readings(self) -> int:
        """Readings in records not yet replayed."""
        return sum(r for s in self._segments for _, r in s.records)

    def __bool__(self) -> bool:
        return any(s.records for s in self._segments)

    # -- writing ---------------------------------------------------------------------------------

    def append(self, body: bytes, readings: int) -> None:
        """Append one record and fsync it; raise SpoolFullError past the size bound."""
        size = _HEADER.size + len(body)
        if self.size_bytes + size > self.max_bytes:
            raise SpoolFullError(
                f"spool holds {self.size_bytes} bytes; {size} more would exceed {self.max_bytes}"
            )
        segment = self._active_segment(size)
        writer = self._writer
        assert writer is not None
        offset = segment.size
        header = _HEADER.pack(_MAGIC, len(body), readings, zlib.crc32(body))
        writer.write(header + body)
        writer.flush()
        os.fsync(writer.fileno())
        segment.size += size
        segment.records.append((offset, readings))

    def _active_segment(self, size: int) -> _Segment:
        last = self._segments[-1] if self._segments else None
        if last is not None and self._writer is not None and last.size + size <= self.segment_bytes:
            return last
        if self._writer is not None:
            self._writer.close()
        number = last.number + 1 if last is not None else 1
        path = self.directory / f"{number:012d}{_SUFFIX}"
        self._writer = path.open("ab")
        _fsync_directory(self.directory)  # the new file's name must survive a crash too
        segment = _Segment(number, path, 0, [])
        self._segments.append(segment)
        return segment

    # -- replay ----------------------------------------------------------------------------------

    def peek(self) -> SpoolRecord | None:
        """The oldest record not yet replayed, or None."""
        for segment in self._segments:
            if segment.records:
                offset, readings = segment.records[0]
                with segment.path.open("rb") as reader:
                    reader.seek(offset)
                    header = reader.read(_HEADER.size)
                    _, length, _, _ = _HEADER.unpack(header)
                    body = reader.read(length)
                return SpoolRecord(segment.number, offset, readings, body)
        return None

    def commit(self, record: SpoolRecord) -> None:
        """Mark the oldest record replayed; delete its segment once nothing in it is left."""
        segment = self._segments[0]
        while not segment.records and len(self._segments) > 1:
            self._drop(segment)
            segment = self._segments[0]
        if segment.number != record.segment or segment.records[0][0] != record.offset:
            raise SpoolError("commit out of order: records are replayed oldest first")
        segment.records.pop(0)
        if not segment.records:
            self._drop(segment)

    def _drop(self, segment: _Segment) -> None:
        if segment is self._segments[-1] and self._writer is not None:
            self._writer.close()
            self._writer = None
        segment.path.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        self._segments.remove(segment)

    # -- start-up --------------------------------------------------------------------------------

    def _recover(self) -> None:
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                number = int(path.stem)
            except ValueError:
                continue
            records, good_size = _scan(path)
            actual = path.stat().st_size
            if good_size < actual:
                log.warning(
                    "spool segment has a torn or corrupt tail; cutting it off",
                    extra={"segment": str(path), "kept_bytes": good_size, "bytes": actual},
                )
                with path.open("r+b") as handle:
                    handle.truncate(good_size)
                    os.fsync(handle.fileno())
            if records:
                self._segments.append(_Segment(number, path, good_size, records))
            else:
                path.unlink()
        if self._segments:
            log.info(
                "spool has records to replay",
                extra={
                    "records": self.records,
                    "readings": self.readings,
                    "bytes": self.size_bytes,
                },
            )


def _scan(path: Path) -> tuple[list[tuple[int, int]], int]:
    """Valid records of a segment, and the length of its valid prefix."""
    records: list[tuple[int, int]] = []
    offset = 0
    with path.open("rb") as reader:
        while True:
            header = reader.read(_HEADER.size)
            if len(header) < _HEADER.size:
                break
            magic, length, readings, crc = _HEADER.unpack(header)
            if magic != _MAGIC:
                break
            body = reader.read(length)
            if len(body) < length or zlib.crc32(body) != crc:
                break
            records.append((offset, readings))
            offset += _HEADER.size + length
    return records, offset


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
