"""Rate limits: a token bucket per key (a token id, or a client address), refilled continuously."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["RateLimiter"]


@dataclass
class RateLimiter:
    """Allows `rate` requests per second per key on average, `burst` at once; rate 0 = off.

    At most `max_keys` buckets are kept: beyond, the full ones (keys quiet for a while) are
    forgotten, so many client addresses cannot grow memory without bound.
    """

    rate: float
    burst: float
    max_keys: int = 100_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> level, time

    def wait_s(self, key: str, now: float | None = None) -> float:
        """0 if the request may go now (and count it), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._prune(now)
        level, then = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate
        self._buckets[key] = (level - 1.0, now)
        return 0.0

    def _prune(self, now: float) -> None:
        refill_s = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill_s}
        if len(self._buckets) >= self.max_keys:
            # Still full of busy keys: drop the oldest half rather than grow.
            ordered = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(ordered[len(ordered) // 2 :])
