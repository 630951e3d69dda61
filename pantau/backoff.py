"""The one backoff: capped exponential delays, jittered so clients never retry in lockstep."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays of uniform(0, min(cap, base * 2**attempt)) seconds; reset() after a success.

    jitter=False gives the ceiling itself: for a single process polling its own dependency,
    where a predictable schedule matters more than spreading a crowd.
    """

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        *,
        jitter: bool = True,
        seed: int | None = None,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base}, cap={cap}")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.attempt = 0
        self._random = random.Random(seed)

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        return self._random.uniform(0.0, ceiling) if self.jitter else ceiling

    def reset(self) -> None:
        """Start again from the shortest delay."""
        self.attempt = 0
