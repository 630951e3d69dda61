"""The outbox: queued notifications, delivered with retries (capped, jittered) and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from api.alerts.episode import Event, Target
from pantau.backoff import Backoff

__all__ = ["DeadLetter", "DeliveryError", "Notification", "Outbox", "notification_key"]

log = logging.getLogger(__name__)


def notification_key(episode_id: str, event: str, level: int) -> str:
    """The idempotency key of one notification of an episode."""
    return f"{episode_id}:{event}:{level}"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient: JSON `body` for a webhook, `subject` and `text` for e-mail."""

    key: str  # idempotency key: notification_key(episode_id, event, level)
    episode_id: str
    event: Event
    target: Target
    body: bytes = b""  # the webhook's JSON body
    subject: str = ""  # the e-mail's subject line
    text: str = ""  # the e-mail's plain text
    created_at: float = field(default_factory=time.time)

    @property
    def dedupe_key(self) -> str:
        """What the outbox deduplicates on: the idempotency key per recipient."""
        return f"{self.target.channel}:{self.target.address}:{self.key}"

    def as_json(self) -> dict[str, Any]:
        """A short description (no body) for logs and the API."""
        return {
            "key": self.key,
            "episode_id": self.episode_id,
            "event": self.event,
            "channel": self.target.channel,
            "address": self.target.address,
        }


class DeliveryError(Exception):
    """A delivery try failed; `permanent` ones are not tried again."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A notification given up on: after its last try, or at once on a permanent error."""

    notification: Notification
    tries: int
    last_error: str
    at: float  # wall-clock time it was given up

    def as_json(self) -> dict[str, Any]:
        """The API's representation."""
        return {
            **self.notification.as_json(),
            "tries": self.tries,
            "last_error": self.last_error,
            "at": self.at,
        }


@dataclass(slots=True)
class _Entry:
    notification: Notification
    backoff: Backoff
    tries: int = 0


SentHook = Callable[[Notification], None]
RetryHook = Callable[[Notification, int, str, float], None]  # (.., tries, error, delay)
DeadHook = Callable[[DeadLetter], None]


class Outbox:
    """Delivers submitted notifications at most `concurrency` at a time, with retries.

    A notification whose key (per recipient) is queued, in flight or was sent in the last
    `dedupe_s` seconds is not queued again. Failures are retried after
    uniform(0, min(max_s, base_s * 2**n)) seconds; after `max_tries` tries, or at once on a
    permanent error, the notification becomes a dead letter.
    """

    def __init__(
        self,
        deliver: Callable[[Notification], Awaitable[None]],
        *,
        max_tries: int,
        base_s: float,
        max_s: float,
        on_sent: SentHook | None = None,
        on_retry: RetryHook | None = None,
        on_dead: DeadHook | None = None,
        max_dead: int = 1000,
        concurrency: int = 4,
        rng: random.Random | None = None,
        dedupe_s: float = 86400.0,
        max_remembered: int = 10000,
    ) -> None:
        if max_tries < 1 or concurrency < 1 or max_dead < 1:
            raise ValueError("max_tries, concurrency and max_dead must be at least 1")
        if not 0 < base_s <= max_s:
            raise ValueError(f"need 0 < base_s <= max_s, got {base_s}, {max_s}")
        self._deliver = deliver
        self._max_tries = max_tries
        self._base_s = base_s
        self._max_s = max_s
        self._on_sent = on_sent
        self._on_retry = on_retry
        self._on_dead = on_dead
        self._concurrency = concurrency
        self._rng = rng if rng is not None else random.Random()
        self._dedupe_s = dedupe_s
        self._max_remembered = max_remembered
        # (due on the loop's monotonic clock, sequence, entry): the next try comes first.
        self._queue: list[tuple[float, int, _Entry]] = []
        self._seq = 0
        self._active: set[str] = set()  # dedupe keys queued or in flight
        self._sent: OrderedDict[str, float] = OrderedDict()  # dedupe key -> when sent
        self._dead: deque[DeadLetter] = deque(maxlen=max_dead)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, notification: Notification) -> None:
        """Queue a notification for delivery, unless the same one is queued or was just sent."""
        key = notification.dedupe_key
        self._forget_old()
        if key in self._active or key in self._sent:
            log.debug("notification deduplicated", extra=notification.as_json())
            return
        self._active.add(key)
        backoff = Backoff(self._base_s, self._max_s, seed=self._rng.getrandbits(64))
        self._push(_Entry(notification, backoff), 0.0)

    def pending(self) -> int:
        """How many notifications are queued or being delivered."""
        return len(self._active)

    def dead_letters(self) -> list[DeadLetter]:
        """The notifications given up on, oldest first (the last `max_dead`)."""
        return list(self._dead)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (run() must be running); False if the time ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with asyncio.TaskGroup() as group:
            for i in range(self._concurrency):
                group.create_task(self._worker(), name=f"outbox-{i}")

    def _push(self, entry: _Entry, delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay if delay > 0 else 0.0
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, entry))
        self._idle.clear()
        self._wake.set()

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self._dedupe_s
        while self._sent and (
            len(self._sent) > self._max_remembered or next(iter(self._sent.values())) < cutoff
        ):
            self._sent.popitem(last=False)

    async def _next(self) -> _Entry:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._queue and self._queue[0][0] <= now:
                return heapq.heappop(self._queue)[2]
            timeout = self._queue[0][0] - now if self._queue else None
            # No await between the check above and clear(): a submit cannot slip in between.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _worker(self) -> None:
        while True:
            entry = await self._next()
            await self._try(entry)

    async def _try(self, entry: _Entry) -> None:
        n = entry.notification
        entry.tries += 1
        try:
            await self._deliver(n)
        except DeliveryError as exc:
            self._failed(entry, str(exc), permanent=exc.permanent)
        except Exception as exc:  # a sender bug must not stop the outbox; retry, then give up
            log.exception("notification sender failed", extra=n.as_json())
            self._failed(entry, f"{type(exc).__name__}: {exc}", permanent=False)
        else:
            self._done(n.dedupe_key)
            self._sent[n.dedupe_key] = time.monotonic()
            log.info("notification sent", extra={**n.as_json(), "tries": entry.tries})
            self._call(self._on_sent, n)

    def _failed(self, entry: _Entry, error: str, *, permanent: bool) -> None:
        n = entry.notification
        if permanent or entry.tries >= self._max_tries:
            dead = DeadLetter(n, entry.tries, error, time.time())
            self._dead.append(dead)
            self._done(n.dedupe_key)
            log.warning(
                "notification dead-lettered",
                extra={**n.as_json(), "tries": entry.tries, "error": error},
            )
            self._call(self._on_dead, dead)
            return
        delay = entry.backoff.next_delay()
        log.info(
            "notification retry",
            extra={**n.as_json(), "tries": entry.tries, "error": error, "delay_s": delay},
        )
        self._push(entry, delay)
        self._call(self._on_retry, n, entry.tries, error, delay)

    def _done(self, key: str) -> None:
        self._active.discard(key)
        if not self._active:
            self._idle.set()

    @staticmethod
    def _call(hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # a metrics callback must not break delivery
            log.exception("outbox callback failed")
