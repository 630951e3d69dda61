"""Hypothesis strategies for the detector bank's twin test: nasty batches that raise alarms."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

from processors.catalog import CATALOG, FieldSpec, KindSpec
from processors.detectors.silence import SilenceDetector
from processors.detectors.spike import SpikeDetector
from processors.detectors.stuck import StuckDetector
from tests.delivery import deliver

__all__ = ["ALARMS", "KINDS", "Batch", "Case", "alarm_counts", "batches"]

Batch = tuple[list[str], list[float], list[list[float]], list[list[bool]]]
Case = tuple[str, list[Batch]]

KINDS = ("air_quality", "water_level")
ALARMS = ("spike", "stuck", "rate_of_change", "dropout")  # the twin's alarms the examples need
START = 1e9
LONGEST = 60  # readings of one device; enough for stuck's warm-up runs and then a frozen run
# Values of the original strategy: repeats, anything in range, unusable (NaN, out of range).
NASTY = st.sampled_from([-5.0, float("nan"), 1e9])
CHAOTIC_VALUE = st.one_of(
    st.sampled_from([10.0, 10.0, 12.0, 15.0, 11.5]), st.floats(0, 400, allow_nan=False), NASTY
)


def _default(detector: type, name: str) -> Any:
    """A detector's default parameter: the scenarios follow the detectors if these move."""
    return inspect.signature(detector).parameters[name].default


SPIKE_THRESHOLD: float = _default(SpikeDetector, "threshold")  # times the step scale
STUCK_MIN_RUN: int = _default(StuckDetector, "min_run")
GAP_FACTOR: float = _default(SilenceDetector, "factor")  # a gap of more intervals is a dropout


class Reading(NamedTuple):
    """One reading before delivery; `batch` is set only for chaotic devices (else by time)."""

    device: str
    ts: float
    values: list[float]
    present: list[bool]
    batch: int | None


def alarm_counts(verdicts: Iterable[tuple[Any, ...]]) -> Counter[str]:
    """Positive decisions per detector, of (detector, ..., flag, score) verdicts."""
    return Counter(v[0] for v in verdicts if v[-2])


def _baseline(
    spec: FieldSpec, noise: int, hold: float, interval: float, n: int, rng: np.random.Generator
) -> npt.NDArray[Any]:
    """A working sensor's field: varying fields wobble by whole resolution steps."""
    if spec.name == "rain_mm":  # dry, with showers (rain while the level rises: flood_rise)
        return np.where(rng.random(n) < 0.2, rng.integers(1, 20, n) * 0.5, 0.0)
    base = 40.0 if spec.low + 10 <= 40.0 <= spec.high - 10 else (spec.low + spec.high) / 2
    if not spec.varies:  # e.g. a battery: mostly one value
        return base + spec.resolution * (rng.random(n) < 0.1)
    # Wobble slower than the field's rate limit (no rate alarm from noise alone).
    noise = max(1, min(noise, int(spec.max_rate_per_h * interval / 3600 / 2 / spec.resolution)))
    # 2 * noise + 1 levels, a new one each reading but with probability `hold`: runs stay
    # short, so stuck learns a small limit and its warm-up runs come soon.
    moves = np.where(rng.random(n) < hold, 0, rng.integers(1, 2 * noise + 1, n))
    return base + spec.resolution * (np.cumsum(moves) % (2 * noise + 1) - noise)


@st.composite
def _scenario_series(draw: st.DrawFn, spec: KindSpec, device: str, seed: int) -> list[Reading]:
    """A device's readings in time order with injected spikes, frozen runs, jumps and a gap.

    Hypothesis draws the structure (lengths, where and how big each fault is) so that it
    shrinks; the sensor noise comes from a seeded generator, which is cheap to draw.
    """
    rng = np.random.default_rng(seed)
    m = len(spec.fields)
    n = draw(st.integers(1, LONGEST))
    interval = draw(st.sampled_from([600.0, 300.0, 60.0]))
    steps = np.full(n, interval)
    steps[0] = draw(st.integers(0, 6)) * interval  # devices start at different times
    # A gap of up to 3 x GAP_FACTOR intervals (beyond GAP_FACTOR: a dropout).
    gap = draw(st.none() | st.tuples(st.integers(2, LONGEST), st.integers(2, int(3 * GAP_FACTOR))))
    if gap is not None and gap[0] < n:
        steps[gap[0]] *= gap[1]
    for k in draw(st.lists(st.integers(1, LONGEST), max_size=3)):
        if k < n:
            steps[k] = 0.0  # a repeated timestamp (with other values)
    ts = START + np.cumsum(steps)
    noise, hold = draw(st.integers(1, 4)), draw(st.sampled_from([0.0, 0.1, 0.3]))
    values = np.stack([_baseline(f, noise, hold, interval, n, rng) for f in spec.fields], axis=1)
    varying = [j for j, f in enumerate(spec.fields) if f.varies]
    # Faults are placed back from the series' end: after the detectors' warm-up when long.
    back = st.integers(0, 24)
    # Spikes of up to 30 thresholds in resolution steps: the scale is a few steps, so most
    # pass the threshold and some do not.
    spike = st.integers(-30 * int(SPIKE_THRESHOLD), 30 * int(SPIKE_THRESHOLD))
    # Jumps of 0.5 (allowed) to 4 times the change the field's rate limit allows per interval.
    for j, before, factor in draw(
        st.lists(st.tuples(st.sampled_from(varying), back, st.integers(1, 8)), max_size=2)
    ):
        _jump(values, spec.fields[j], j, n - 1 - before, factor / 2 * interval / 3600.0)
    for j, before, length in draw(
        st.lists(
            st.tuples(
                st.sampled_from(varying),
                st.integers(0, 8),
                st.integers(STUCK_MIN_RUN - 2, 3 * STUCK_MIN_RUN),
            ),
            max_size=2,
        )
    ):
        end = n - before
        if end - length >= 0:  # frozen at the value it had
            values[end - length : end, j] = values[end - length, j]
    for j, before, size in draw(
        st.lists(st.tuples(st.integers(0, m - 1), back, spike), max_size=3)
    ):
        _spike(values, spec.fields[j], j, n - 2 - before, size)
    for before, j, value in draw(
        st.lists(st.tuples(st.integers(0, LONGEST - 1), st.integers(0, m - 1), NASTY), max_size=3)
    ):
        if before < n:
            values[n - 1 - before, j] = value
    absent = draw(st.sampled_from([0.0, 0.05, 0.3]))
    present = rng.random((n, m)) >= absent
    return [
        Reading(device, t, v, p, None)
        for t, v, p in zip(ts.tolist(), values.tolist(), present.tolist(), strict=True)
    ]


def _jump(values: npt.NDArray[Any], spec: FieldSpec, j: int, at: int, hours: float) -> None:
    """Shift a field from reading `at` on by `hours` of its fastest plausible change."""
    size = spec.max_rate_per_h * hours
    if at < 1 or not np.isfinite(size):
        return
    if values[at:, j].max() + size > spec.high:
        size = -size  # stay in range: jump down
    if values[at:, j].min() + size >= spec.low:
        values[at:, j] += size


def _spike(values: npt.NDArray[Any], spec: FieldSpec, j: int, at: int, size: int) -> None:
    """One reading `size` resolution steps off, the other way or capped to stay in range."""
    if at < 1:
        return
    value = values[at, j]
    step = size * spec.resolution
    if not spec.low <= value + step <= spec.high:
        step = -step
    if spec.low <= value + step <= spec.high:
        values[at, j] = value + step
    else:  # no room either way: as far as the range allows
        values[at, j] = spec.high if step > 0 else spec.low


@st.composite
def _chaotic_series(draw: st.DrawFn, spec: KindSpec, device: str, batches_: int) -> list[Reading]:
    """The original strategy's readings: random times (out of order, repeated) and values."""
    m = len(spec.fields)
    return [
        Reading(
            device,
            START + 600.0 * draw(st.integers(0, 60)),
            draw(st.lists(CHAOTIC_VALUE, min_size=m, max_size=m)),
            draw(st.lists(st.booleans(), min_size=m, max_size=m)),
            draw(st.integers(0, batches_ - 1)),
        )
        for _ in range(draw(st.integers(1, 25)))
    ]


@st.composite
def batches(draw: st.DrawFn) -> Case:
    """Batches of one kind: devices with injected faults and chaotic devices, delivered badly.

    Scenario readings are cut into batches in time order, then some arrive late (a later
    batch, after newer ones: skipped), some twice, and each batch may be shuffled.
    """
    kind = draw(st.sampled_from(KINDS))
    spec = CATALOG[kind]
    count = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    readings: list[Reading] = []
    for d in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 3)) == 3:  # one device in four
            readings += draw(_chaotic_series(spec, f"d{d}", count))
        else:
            readings += draw(_scenario_series(spec, f"d{d}", seed + d))
    rng = np.random.default_rng(seed)
    timed = sorted((r for r in readings if r.batch is None), key=lambda r: r.ts)
    placed = [(r.batch, r) for r in readings if r.batch is not None]
    parts = deliver(draw, rng, timed, count, moves=3, placed=placed)
    return kind, [
        (
            [r.device for r in part],
            [r.ts for r in part],
            [r.values for r in part],
            [r.present for r in part],
        )
        for part in parts
        if part
    ]
