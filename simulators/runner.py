"""Send a stream of messages on a virtual clock, report the rate, and count what arrived."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from simulators.clock import VirtualClock
from simulators.engine import Outgoing

__all__ = ["RunResult", "Sink", "run"]

log = logging.getLogger(__name__)

_WAIT_SLICE_S: Final = 0.25  # how soon a stop request is noticed while waiting


class Sink(Protocol):
    """Where messages go: an MQTT publisher, or a recorder in tests."""

    @property
    def published(self) -> int:
        """Messages handed over so far."""
        ...

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged so far."""
        ...

    def publish(self, device_id: str, topic: str, payload: bytes) -> None:
        """Send one message."""
        ...

    def wait(self, seconds: float) -> None:
        """Let `seconds` pass while keeping the connections serviced."""
        ...

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding acknowledgements; return how many are still missing."""
        ...


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run sent and what the broker acknowledged."""

    messages: int
    readings: int
    acked: int
    unacked: int
    elapsed_s: float  # wall time from the start to the last acknowledgement
    stopped: bool  # ended early by a stop request
    newest_ts: float = -math.inf  # the latest observation time sent

    @property
    def rate(self) -> float:
        """Acknowledged messages per wall second."""
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run(
    messages: Iterable[Outgoing],
    sink: Sink,
    clock: VirtualClock,
    *,
    stop: threading.Event | None = None,
    report_every_s: float | None = None,
    target_rate: float | None = None,
    drain_timeout_s: float = 30.0,
) -> RunResult:
    """Publish each message when the clock says it is due; then wait for the broker's acks."""
    stop = stop or threading.Event()
    began = time.monotonic()
    next_report = began + (report_every_s or 0.0)
    last_report = (began, sink.published, sink.acked)
    sent = readings = 0
    newest = -math.inf
    for message in messages:
        if stop.is_set():
            break
        delay = clock.delay_until(message.emit_at, message.newest_ts)
        while delay > 0 and not stop.is_set():
            sink.wait(min(delay, _WAIT_SLICE_S))
            delay = clock.delay_until(message.emit_at, message.newest_ts)
        if stop.is_set():
            break
        sink.publish(message.device_id, message.topic, message.payload)
        sent += 1
        readings += message.readings
        newest = max(newest, message.newest_ts)
        if report_every_s is not None and time.monotonic() >= next_report:
            last_report = _report(sink, last_report, target_rate)
            next_report += report_every_s
    unacked = sink.flush(drain_timeout_s)
    elapsed = time.monotonic() - began
    if report_every_s is not None:
        _report(sink, last_report, target_rate)
    return RunResult(sent, readings, sink.acked, unacked, elapsed, stop.is_set(), newest)


def _report(
    sink: Sink, last: tuple[float, int, int], target_rate: float | None
) -> tuple[float, int, int]:
    now = time.monotonic()
    span = max(now - last[0], 1e-9)
    extra: dict[str, object] = {
        "sent_per_s": round((sink.published - last[1]) / span),
        "acked_per_s": round((sink.acked - last[2]) / span),
        "sent": sink.published,
        "acked": sink.acked,
    }
    if target_rate is not None:
        extra["target_per_s"] = round(target_rate)
    log.info("rate", extra=extra)
    return now, sink.published, sink.acked
