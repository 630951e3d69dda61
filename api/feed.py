"""The live feed: events fan out to WebSocket and SSE clients in frames, each client filtered.

Events gather for `interval` seconds, then each distinct filter's frame is encoded once and
queued to its clients. Every client has a bounded queue of frames: a slow client loses its own
oldest frames, and the next frame it gets says how many events it lost. Nothing a client does
can slow the flush, so one slow client never delays the others.

Nothing an event holds stops the feed either: an event that cannot be encoded is dropped and
counted (`events_failed`), the others go out, and `run` records its liveness (`alive`,
`last_flush`) for the readiness check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

__all__ = ["EVENT_TYPES", "FeedFilter", "FeedHub", "Subscription"]

log = logging.getLogger(__name__)

EVENT_TYPES: Final = frozenset({"anomaly", "indicator", "reading", "ack", "alert"})


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """Which events a client wants; None matches anything."""

    types: frozenset[str] = EVENT_TYPES
    kind: str | None = None
    district: str | None = None
    device_id: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        """True if the event passes this filter."""
        return (
            event["type"] in self.types
            and (self.kind is None or event.get("kind") == self.kind)
            and (self.district is None or event.get("district") == self.district)
            and (self.device_id is None or event.get("device_id") == self.device_id)
        )


@dataclass(eq=False)
class Subscription:
    """One client's queue of frames."""

    filter: FeedFilter
    max_frames: int
    # seq, events, the events' JSON array, and the whole frame as sent when it goes alone
    frames: deque[tuple[int, int, bytes, bytes]] = field(default_factory=deque)
    dropped: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def put(self, seq: int, events: int, body: bytes, framed: bytes | None = None) -> int:
        """Queue a frame (`framed`: the message as sent alone); returns events dropped for room."""
        lost = 0
        while len(self.frames) >= self.max_frames:
            lost += self.frames.popleft()[1]
        self.dropped += lost
        self.frames.append((seq, events, body, framed or _framed(seq, 0, body)))
        self.wake.set()
        return lost

    async def next_frame(self) -> bytes | None:
        """Every queued frame merged into one JSON frame, or None once the hub closed this."""
        while not self.frames:
            if self.closed:
                return None
            self.wake.clear()
            await self.wake.wait()
        # A client that fell behind gets what it missed in one message, not one per frame:
        # sending is the expensive part, so a backlog drains in one go.
        frames = list(self.frames)
        self.frames.clear()
        dropped, self.dropped = self.dropped, 0
        if len(frames) == 1 and not dropped:
            return frames[0][3]  # the common case: the bytes every client of the filter gets
        seq = frames[-1][0]
        if len(frames) == 1:
            body = frames[0][2]
        else:
            body = b"[" + b",".join(f[2][1:-1] for f in frames if len(f[2]) > 2) + b"]"
        return _framed(seq, dropped, body)


class FeedHub:
    """Gathers events and fans them out in frames."""

    def __init__(
        self,
        max_frames: int = 50,
        on_dropped: Callable[[int], None] | None = None,
        on_failed: Callable[[int], None] | None = None,
    ) -> None:
        self.max_frames = max_frames
        self.on_dropped = on_dropped
        self.on_failed = on_failed
        self._pending: list[dict[str, Any]] = []
        self._subscriptions: set[Subscription] = set()
        self._seq = 0
        self.events_dropped = 0  # all clients, for the metrics
        self.events_failed = 0  # events that could not be sent (encoding), for the metrics
        # Liveness for readiness: True while run() runs; when it last flushed (monotonic).
        self.alive = False
        self.last_flush: float | None = None
        self.interval: float | None = None

    def healthy(self, now: float | None = None) -> bool:
        """True while run() runs and flushed within a few intervals (at least 5 s)."""
        if not self.alive or self.last_flush is None or self.interval is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self.last_flush <= max(5.0, 20 * self.interval)

    @property
    def clients(self) -> int:
        """Connected clients."""
        return len(self._subscriptions)

    def publish(self, event: dict[str, Any]) -> None:
        """Add one event to the next frame."""
        if self._subscriptions:
            self._pending.append(event)

    def subscribe(self, feed_filter: FeedFilter) -> Subscription:
        """A new client's subscription."""
        subscription = Subscription(feed_filter, self.max_frames)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a client."""
        self._subscriptions.discard(subscription)
        subscription.closed = True
        subscription.wake.set()

    def close(self) -> None:
        """End every subscription (shutdown)."""
        for subscription in list(self._subscriptions):
            self.unsubscribe(subscription)

    def flush(self) -> None:
        """Send what gathered since the last flush."""
        events, self._pending = self._pending, []
        if not events:
            return
        self._seq += 1
        groups: dict[FeedFilter, list[Subscription]] = {}
        for subscription in self._subscriptions:
            groups.setdefault(subscription.filter, []).append(subscription)
        for feed_filter, members in groups.items():
            try:
                chosen = _select(feed_filter, events)
                body = orjson.dumps(chosen) if chosen else b""
            except Exception:  # one bad event must not stop the others
                chosen, body = self._encode_each(feed_filter, events)
            if not chosen:
                continue
            # Framed once for the filter's clients too: a client that keeps up sends these bytes.
            framed = _framed(self._seq, 0, body)
            for subscription in members:
                lost = subscription.put(self._seq, len(chosen), body, framed)
                if lost:
                    self.events_dropped += lost
                    if self.on_dropped is not None:
                        self.on_dropped(lost)

    def _encode_each(
        self, feed_filter: FeedFilter, events: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], bytes]:
        """The events one by one: those that match and encode, the others dropped, counted."""
        chosen, parts, failed = [], [], 0
        for event in events:
            try:
                if not feed_filter.matches(event):
                    continue
                parts.append(orjson.dumps(event))
            except Exception:  # counted; the rest still go out
                failed += 1
                continue
            chosen.append(event)
        if failed:
            self.events_failed += failed
            if self.on_failed is not None:
                self.on_failed(failed)
            log.warning("feed events dropped: they could not be encoded", extra={"count": failed})
        return chosen, b"[" + b",".join(parts) + b"]"

    async def run(self, interval: float) -> None:
        """Flush every `interval` seconds until cancelled; a flush that fails is counted."""
        self.interval = interval
        self.alive = True
        self.last_flush = time.monotonic()
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    self.flush()
                except Exception:  # the feed goes on for everyone
                    self.events_failed += 1
                    if self.on_failed is not None:
                        self.on_failed(1)
                    log.exception("feed flush failed")
                self.last_flush = time.monotonic()
        finally:
            self.alive = False


def _framed(seq: int, dropped: int, body: bytes) -> bytes:
    """One message of the feed: its sequence number, the events lost before it, the events."""
    return b'{"seq":%d,"dropped":%d,"events":%b}' % (seq, dropped, body)


def _select(feed_filter: FeedFilter, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    if feed_filter == FeedFilter():
        return list(events)
    return [e for e in events if feed_filter.matches(e)]
