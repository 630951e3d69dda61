"""Per-token rate limits: a token bucket per token id, refilled continuously."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["RateLimiter"]


@dataclass
class RateLimiter:
    """Allows `rate` requests per second per key on average, `burst` at once; rate 0 = off."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> level, time

    def wait_s(self, key: str, now: float | None = None) -> float:
        """0 if the request may go now (and count it), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        level, then = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate
        self._buckets[key] = (level - 1.0, now)
        return 0.0
