"""When each device reports: `start + phase + k * interval`, vectorised over the fleet."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Schedule"]

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]


class Schedule:
    """Reading times of a set of devices, each with its own interval and phase."""

    def __init__(self, intervals: npt.ArrayLike, phases: npt.ArrayLike, start: float) -> None:
        """Device i reports at start + phases[i] + k * intervals[i], k = 0, 1, ..."""
        self.intervals: _Float = np.asarray(intervals, dtype=np.float64)
        self.phases: _Float = np.asarray(phases, dtype=np.float64)
        if self.intervals.shape != self.phases.shape or self.intervals.ndim != 1:
            raise ValueError("intervals and phases must be 1-d arrays of the same length")
        if np.any(self.intervals <= 0):
            raise ValueError("intervals must be > 0")
        self.start = start

    @classmethod
    def spread(cls, intervals: npt.ArrayLike, start: float, rng: np.random.Generator) -> Schedule:
        """Phases spread evenly (in random device order), so the fleet's message rate is steady."""
        steps = np.asarray(intervals, dtype=np.float64)
        rank = rng.permutation(steps.size)
        return cls(steps, steps * (rank + 0.5) / max(steps.size, 1), start)

    def readings_per_second(self) -> float:
        """Readings per simulated second of the whole set."""
        return float(np.sum(1.0 / self.intervals)) if self.intervals.size else 0.0

    def between(self, t0: float, t1: float) -> tuple[_Int, _Float]:
        """Device index and time of every reading in [t0, t1), sorted by time, then device."""
        offset = self.start + self.phases
        first = np.maximum(np.ceil((t0 - offset) / self.intervals), 0.0).astype(np.int64)
        stop = np.maximum(np.ceil((t1 - offset) / self.intervals), 0.0).astype(np.int64)
        counts = np.maximum(stop - first, 0)
        device = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        starts = np.cumsum(counts) - counts
        k = first[device] + (np.arange(device.size, dtype=np.int64) - starts[device])
        # Millisecond timestamps, as devices send them.
        ts = np.round(offset[device] + k * self.intervals[device], 3)
        order = np.lexsort((device, ts))
        return device[order], ts[order]
