"""Durable storage of encoded batches: InfluxDB when it answers, else the local spool."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Final, Literal

from ingest.metrics import CollectorMetrics
from ingest.rejections import Reason, Rejection, bounded, encode_rejections
from ingest.spool import Spool, SpoolFullError
from pantau.backoff import Backoff
from pantau.influx import InfluxClient, InfluxClientError, InfluxUnavailableError
from processors.catalog import KINDS

__all__ = ["Durable", "DurableStore"]

log = logging.getLogger(__name__)

# InfluxDB 1.x/2.x name the offending field of a type conflict; lines carrying it are the ones
# it dropped. Anything else is isolated by bisection.
_CONFLICT: Final = re.compile(
    rb'input field \\?"(?P<field>[^"\\]+)\\?" on measurement \\?"(?P<measurement>[^"\\]+)\\?"'
)
_DEVICE_TAG: Final = re.compile(rb"device_id=([^, ]+)")
Durable = Literal["influx", "spool", ""]  # where persist() put a body ("": nowhere)
_DROPPED: Final = re.compile(r"dropped=(\d+)")
_PROBE_MAX_S: Final = 5.0


class DurableStore:
    """Make a batch durable: write it to InfluxDB or, failing that, fsync it to the spool."""

    def __init__(
        self,
        influx: InfluxClient,
        spool: Spool,
        metrics: CollectorMetrics,
        *,
        collector_id: str,
        rejected_payload_bytes: int = 1024,
    ) -> None:
        self._influx = influx
        self._spool = spool
        self._metrics = metrics
        self._collector_id = collector_id
        self._payload_bytes = rejected_payload_bytes
        self._healthy = True
        self._next_probe = 0.0
        self._probe = Backoff(0.5, _PROBE_MAX_S, jitter=False)
        self._spool_full = False
        self._next_rejection_ns = 0
        self._rejection_clock = threading.RLock()
        self._update_spool_metrics()

    @property
    def healthy(self) -> bool:
        """False while InfluxDB is considered down (batches then go to the spool)."""
        return self._healthy

    @property
    def spool(self) -> Spool:
        """The spool behind this store."""
        return self._spool

    def next_rejection_ns(self) -> int:
        """A receive-time timestamp no earlier than any this collector handed out before."""
        with self._rejection_clock:
            first = max(time.time_ns(), self._next_rejection_ns)
            self._next_rejection_ns = first
            return first

    def encode_rejections(self, rejections: list[Rejection]) -> str:
        """Line protocol for rejections, with timestamps distinct within this collector."""
        # The batch loop encodes rejections while the writer encodes InfluxDB's refusals: one
        # clock for both, so no two records share a timestamp (and overwrite each other).
        with self._rejection_clock:
            text, self._next_rejection_ns = encode_rejections(
                rejections, collector=self._collector_id, first_ns=self.next_rejection_ns()
            )
            return text

    # -- the write path ---------------------------------------------------------------------------

    def persist(
        self,
        body: bytes,
        readings: int,
        *,
        stop: threading.Event | None = None,
        deadline: float | None = None,
    ) -> Durable:
        """Make `body` durable; block (without acking) while both InfluxDB and the spool fail.

        Returns where it went: "influx" or "spool"; "" (false) only when `stop` is set or
        `deadline` passes first.
        """
        wait = Backoff(0.1, 2.0, jitter=False)
        while True:
            if self._healthy:
                try:
                    self._write(body)
                    return "influx"
                except InfluxUnavailableError as exc:
                    self._mark_down(str(exc))
            try:
                self._spool.append(body, readings)
            except SpoolFullError as exc:
                if not self._spool_full:
                    log.error(
                        "spool full: holding acknowledgements, the broker keeps the backlog",
                        extra={"error": str(exc)},
                    )
                self._spool_full = True
                self._metrics.spool_full.set(1)
            else:
                self._metrics.readings_spooled.inc(readings)
                self._metrics.batches_spooled.inc()
                self._update_spool_metrics()
                return "spool"
            # Full spool: only InfluxDB coming back can make room, so keep probing it.
            self.replay(budget_s=1.0, force_probe=True)
            delay = wait.next_delay()
            if deadline is not None and time.monotonic() + delay > deadline:
                return ""
            if stop is not None and stop.wait(delay):
                return ""
            if stop is None:
                time.sleep(delay)

    def replay(self, *, budget_s: float = 0.05, force_probe: bool = False) -> int:
        """Replay spooled records oldest first for up to `budget_s`; return how many went."""
        if not self._spool:
            return 0
        now = time.monotonic()
        if not self._healthy and not force_probe and now < self._next_probe:
            return 0
        replayed = 0
        until = now + budget_s
        while self._spool:
            record = self._spool.peek()
            assert record is not None
            try:
                self._write(record.body)
            except InfluxUnavailableError as exc:
                self._mark_down(str(exc))
                break
            self._spool.commit(record)
            replayed += 1
            self._metrics.readings_replayed.inc(record.readings)
            self._metrics.batches_replayed.inc()
            if not self._healthy:
                log.info(
                    "InfluxDB is back; replaying the spool",
                    extra={"records": self._spool.records},
                )
            self._healthy = True
            self._probe.reset()
            if self._spool_full:
                log.info("spool has room again; acknowledging resumes")
                self._spool_full = False
                self._metrics.spool_full.set(0)
            if time.monotonic() >= until:
                break
        self._update_spool_metrics()
        if replayed and not self._spool:
            log.info("spool drained")
        return replayed

    def _mark_down(self, error: str) -> None:
        self._metrics.influx_errors.labels("unavailable").inc()
        if self._healthy:
            log.warning("InfluxDB unavailable; spooling batches", extra={"error": bounded(error)})
        self._healthy = False
        self._next_probe = time.monotonic() + self._probe.next_delay()

    def _write(self, body: bytes) -> None:
        """Write a body; lines InfluxDB refuses (4xx) become rejections, the rest is written."""
        started = time.perf_counter()
        try:
            self._influx.write(body)
        except InfluxClientError as exc:
            self._metrics.influx_errors.labels("client").inc()
            self._write_around(body.split(b"\n"), exc)
        except InfluxUnavailableError as exc:
            if exc.database_missing:
                self._influx.create_database()
            raise
        self._metrics.batch_write_seconds.observe(time.perf_counter() - started)

    def _write_around(self, lines: list[bytes], exc: InfluxClientError) -> None:
        """Split off the lines InfluxDB refused, record them, and write the others."""
        refused, others = _named_lines(lines, exc.message)
        dropped = _DROPPED.search(exc.message)
        if len(refused) > 1 and dropped is not None and int(dropped[1]) < len(refused):
            # A type conflict holds per shard: InfluxDB stored the named lines of the other
            # shards. Writing the named lines again in halves finds the refused ones (the
            # stored ones are rewritten unchanged); `others` went in with the first write.
            middle = len(refused) // 2
            for half in (refused[:middle], refused[middle:]):
                self._write_lines(half)
            if others:
                self._write_lines(others)
            return
        if not refused:
            if len(lines) == 1:
                refused, others = lines, []
            else:  # nothing named: bisect until each refused line stands alone
                middle = len(lines) // 2
                for half in (lines[:middle], lines[middle:]):
                    self._write_lines(half)
                return
        log.error(
            "InfluxDB refused points; keeping them as rejections",
            # InfluxDB's message may quote a refused line (up to a whole payload): bounded.
            extra={"points": len(refused), "error": bounded(exc.message)},
        )
        if any(line.startswith(b"rejected,") for line in refused):
            # The rejection records themselves are refused: storing them as rejections would
            # loop forever. The log line above is their only trace.
            refused = [line for line in refused if not line.startswith(b"rejected,")]
            if not refused:
                if others:
                    self._write_lines(others)
                return
        rejections = [_refusal(line, exc.message, self._payload_bytes) for line in refused]
        self._metrics.rejected.labels(Reason.INFLUX_REJECTED.value).inc(len(rejections))
        self._write_lines([self.encode_rejections(rejections).encode()])
        if others:
            self._write_lines(others)

    def _write_lines(self, lines: list[bytes]) -> None:
        body = b"\n".join(lines)
        try:
            self._influx.write(body)
        except InfluxClientError as exc:
            self._write_around(lines, exc)

    def _update_spool_metrics(self) -> None:
        self._metrics.spool_bytes.set(self._spool.size_bytes)
        self._metrics.spool_readings.set(self._spool.readings)


def _named_lines(lines: list[bytes], message: str) -> tuple[list[bytes], list[bytes]]:
    """Lines of the measurement and field a type-conflict message names, and the rest."""
    match = _CONFLICT.search(message.encode())
    if match is None:
        return [], lines
    prefix = match["measurement"] + b","
    first, later = b" " + match["field"] + b"=", b"," + match["field"] + b"="
    refused: list[bytes] = []
    others: list[bytes] = []
    for line in lines:
        named = line.startswith(prefix) and (first in line or later in line)
        (refused if named else others).append(line)
    return refused, others


def _refusal(line: bytes, message: str, payload_bytes: int) -> Rejection:
    device = _DEVICE_TAG.search(line)
    kind = line.split(b",", 1)[0].decode(errors="replace")
    return Rejection(
        reason=Reason.INFLUX_REJECTED,
        detail=message,
        topic="",
        payload=line[:payload_bytes],
        kind=kind if kind in KINDS else "unknown",
        device_id=device.group(1).decode(errors="replace") if device else "",
    )
