"""Virtual time: simulated seconds run `speed` times faster than the wall clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["VirtualClock"]


class VirtualClock:
    """Maps simulated epoch seconds to wall-clock waits, optionally never ahead of the wall."""

    def __init__(
        self,
        start: float,
        speed: float,
        *,
        cap_at_wall: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """Start the clock now at simulated time `start`; speed may be math.inf (no pacing)."""
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.start = start
        self.speed = speed
        self.cap_at_wall = cap_at_wall
        self._monotonic = monotonic
        self._wall = wall
        self._origin = monotonic()

    def delay_until(self, sim_ts: float, observed_ts: float | None = None) -> float:
        """Wall seconds to wait until `sim_ts` is due; the cap applies to `observed_ts` if given."""
        # A delayed delivery is due later (`sim_ts`) than its newest observation (`observed_ts`).
        paced = 0.0
        if math.isfinite(self.speed):
            paced = self._origin + (sim_ts - self.start) / self.speed - self._monotonic()
        # A reading stamped in the future would be rejected by the collector (clock skew), so
        # simulated time waits for the wall clock once it has caught up with it.
        newest = sim_ts if observed_ts is None else observed_ts
        ahead = newest - self._wall() if self.cap_at_wall else 0.0
        return max(paced, ahead, 0.0)

    def elapsed(self) -> float:
        """Wall seconds since the clock started."""
        return self._monotonic() - self._origin
