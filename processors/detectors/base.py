"""What detectors report: per-reading scores and, separately, thresholded decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["Findings", "RoundDetector"]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Findings:
    """One detector's verdicts on some readings: score in [0, 1] and a separate decision.

    `ref` identifies the reading (the caller's own numbering), `row` the device, `field` the
    catalog column (-1 for device-level findings), `ts` the reading's observation time.
    """

    detector: str
    ref: npt.NDArray[np.int64]
    row: _Int
    field: _Int
    ts: _Float
    value: _Float
    score: _Float
    flag: _Bool

    def __len__(self) -> int:
        return len(self.ref)

    @staticmethod
    def empty(detector: str) -> Findings:
        """No findings."""
        return Findings(
            detector,
            np.empty(0, np.int64),
            np.empty(0, np.intp),
            np.empty(0, np.intp),
            np.empty(0),
            np.empty(0),
            np.empty(0),
            np.empty(0, np.bool_),
        )

    @staticmethod
    def concat(detector: str, parts: list[Findings]) -> Findings:
        """Findings of several rounds as one."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Findings.empty(detector)
        return Findings(
            detector,
            np.concatenate([p.ref for p in parts]),
            np.concatenate([p.row for p in parts]),
            np.concatenate([p.field for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.flag for p in parts]),
        )

    def flagged(self) -> Findings:
        """Only the findings whose decision is positive."""
        keep = self.flag
        return Findings(
            self.detector,
            self.ref[keep],
            self.row[keep],
            self.field[keep],
            self.ts[keep],
            self.value[keep],
            self.score[keep],
            self.flag[keep],
        )


class RoundDetector(Protocol):
    """A sequential detector updated one round at a time (each device at most once per round)."""

    name: str

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""

    def step(
        self, rows: _Int, ts: _Float, values: _Float, present: _Bool, ref: npt.NDArray[np.int64]
    ) -> Findings:
        """Learn from and score one round of readings."""
