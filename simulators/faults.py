"""Fault injection with ground truth: pure numpy edits of a series, and the truth file format.

Value faults (spike, stuck, drift, level_shift, noise_burst) change values in place; dropout
removes readings. Amplitudes are in robust standard deviations of the series' values (1.4826 x
the MAD of the values themselves, not of their differences; see `robust_scale`). Every
injected fault is one `FaultEvent`; `write_ground_truth`/`read_ground_truth` keep them in the
CSV that `pantau evaluate` reads. Device-level faults of the simulated fleet (lamp_out,
day_burn, power_off_rating, duplicate, out_of_order, malformed) use the same file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "FAULT_TYPES",
    "FaultEvent",
    "inject_drift",
    "inject_dropout",
    "inject_level_shift",
    "inject_noise_burst",
    "inject_spike",
    "inject_stuck",
    "read_ground_truth",
    "robust_scale",
    "write_ground_truth",
]

FAULT_TYPES: Final = (
    "spike",
    "stuck",
    "drift",
    "dropout",
    "noise_burst",
    "level_shift",
    "lamp_out",
    "day_burn",
    "power_off_rating",
    "duplicate",
    "out_of_order",
    "malformed",
)

_Float = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One injected fault: which device and field, what, and when (epoch seconds, inclusive)."""

    device_id: str
    kind: str
    field: str  # empty for device-level faults (dropout, lamp_out, ...)
    fault: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if self.fault not in FAULT_TYPES:
            raise ValueError(f"unknown fault {self.fault!r}; known: {', '.join(FAULT_TYPES)}")
        if self.end < self.start:
            raise ValueError(f"fault ends before it starts: {self.start} > {self.end}")


def write_ground_truth(path: Path, events: Iterable[FaultEvent]) -> None:
    """Write events as CSV (header: device_id,kind,field,fault,start,end)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([f.name for f in fields(FaultEvent)])
        for event in events:
            writer.writerow([*astuple(event)[:4], repr(float(event.start)), repr(float(event.end))])


def read_ground_truth(path: Path) -> list[FaultEvent]:
    """Read a ground-truth CSV written by write_ground_truth."""
    with path.open(newline="", encoding="utf-8") as source:
        return [
            FaultEvent(
                row["device_id"],
                row["kind"],
                row["field"],
                row["fault"],
                float(row["start"]),
                float(row["end"]),
            )
            for row in csv.DictReader(source)
        ]


def robust_scale(values: _Float) -> float:
    """1.4826 x the MAD of the finite values (the series' own spread, not of its steps)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    mad = float(np.median(np.abs(finite - np.median(finite))))
    # A quantised series (a manual gauge at 10 cm for days) has MAD 0: use the spread instead.
    spread = 1.4826 * mad if mad > 0 else float(finite.std())
    return max(spread, 1e-3 * max(1.0, float(np.abs(finite).mean())))


def inject_spike(
    values: _Float,
    index: int,
    *,
    magnitude: float = 8.0,
    sign: float = 1.0,
    scale: float | None = None,
) -> None:
    """One reading jumps by `magnitude` robust standard deviations of the series (or `scale`)."""
    values[index] += sign * magnitude * (robust_scale(values) if scale is None else scale)


def inject_stuck(values: _Float, start: int, length: int) -> None:
    """The sensor repeats its last good value for `length` readings."""
    values[start : start + length] = values[start - 1] if start > 0 else values[start]


def inject_drift(
    values: _Float,
    start: int,
    length: int,
    *,
    total: float = 6.0,
    hold: int = 0,
    scale: float | None = None,
) -> None:
    """An offset ramping from 0 to `total` robust s.d. over `length` readings, then held `hold`."""
    step = total * (robust_scale(values) if scale is None else scale)
    offset = np.r_[np.linspace(0.0, step, length), np.full(hold, step)]
    span = values[start : start + length + hold]
    span += offset[: len(span)]


def inject_level_shift(
    values: _Float,
    start: int,
    length: int,
    *,
    magnitude: float = 3.0,
    sign: float = 1.0,
    scale: float | None = None,
) -> None:
    """An abrupt offset of `magnitude` robust s.d., held for `length` readings, then gone."""
    values[start : start + length] += (
        sign * magnitude * (robust_scale(values) if scale is None else scale)
    )


def inject_noise_burst(
    values: _Float,
    start: int,
    length: int,
    rng: np.random.Generator,
    *,
    magnitude: float = 4.0,
    scale: float | None = None,
) -> None:
    """Zero-mean noise of `magnitude` robust standard deviations for `length` readings."""
    sd = magnitude * (robust_scale(values) if scale is None else scale)
    span = values[start : start + length]
    span += rng.normal(0.0, sd, len(span))


def inject_dropout(keep: npt.NDArray[np.bool_], start: int, length: int) -> None:
    """The device is silent for `length` readings (marks them as not delivered)."""
    keep[start : start + length] = False
