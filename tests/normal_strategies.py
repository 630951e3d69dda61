"""Hypothesis strategies for the NormalDetector twin test: long seasonal series with faults.

Hypothesis draws the structure (detector parameters, length, period, noise, where each fault
goes and how big it is) so that it shrinks; the values come from a seeded numpy generator,
which is cheap to draw. Readings are then delivered badly: in several batches, some late,
some twice, shuffled.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

from processors.catalog import CATALOG, KindSpec, generic_spec
from tests.delivery import deliver

__all__ = ["Batch", "Case", "kind_spec", "normal_cases"]

Batch = tuple[list[str], list[float], list[list[float]], list[list[bool]]]


class Case(NamedTuple):
    """A kind, the detector's parameters and the batches as delivered."""

    kind: str
    params: dict[str, Any]
    batches: list[Batch]


START = 1.7e9 - (1.7e9 % 86400.0)  # a UTC midnight (a Thursday: weekday 3)
FAULTS = ("spike", "step", "ramp", "burst", "lost", "lost")  # lost needs days: drawn twice as often


def kind_spec(kind: str) -> KindSpec:
    """The catalog's kind, or two varying fields without limits ("generic")."""
    if kind == "generic":
        return generic_spec(("a", "b"), np.zeros((2, 2)))
    return CATALOG[kind]


# Small warm-ups, short relearn/quiet periods, sensitive (drift_k, shift_h) and (amp_sd,
# lost_q) pairs (as in the detector's own tests) and a faster daily profile, so that every
# report alarms in a few hundred readings. Parameters not drawn keep NormalDetector's
# defaults (in bank and twin alike).
PARAMS = st.fixed_dictionaries(
    {
        "warmup": st.sampled_from([12, 24, 48, 96]),
        "relearn": st.sampled_from([10, 40, 300]),
        "quiet_for": st.sampled_from([0, 10, 200]),
        "hold": st.sampled_from([0.5, 1.0]),
        "shift": st.sampled_from([(0.5, 20.0), (1.0, 40.0), (2.0, 60.0)]),
        "lost": st.sampled_from([(1.0, 0.3), (1.0, 0.3), (2.0, 0.2)]),
        "day_rate": st.sampled_from([0.25, 0.5, 0.5]),
    },
    optional={"short_rate": st.sampled_from([0.2, 0.5])},
)


def _params(drawn: dict[str, Any]) -> dict[str, Any]:
    """The drawn parameters by NormalDetector's names."""
    params = dict(drawn)
    if "shift" in params:
        params["drift_k"], params["shift_h"] = params.pop("shift")
    if "lost" in params:
        params["amp_sd"], params["lost_q"] = params.pop("lost")
    return params


class _Reading(NamedTuple):
    device: str
    ts: float
    values: list[float]
    present: list[bool]


@st.composite
def _series(draw: st.DrawFn, spec: KindSpec, device: str, seed: int) -> list[_Reading]:
    """A device's readings in time order: level, daily and weekly cycles, noise and faults."""
    rng = np.random.default_rng(seed)
    m = len(spec.fields)
    n = draw(st.integers(150, 600))
    interval = draw(st.sampled_from([3600.0, 1800.0, 7200.0, 1234.5]))
    steps = np.full(n, interval)
    steps[0] = draw(st.integers(0, 48)) * 1800.0 + draw(st.sampled_from([0.0, 0.25, 17.0]))
    for k, factor in draw(st.lists(st.tuples(st.integers(1, 599), st.integers(0, 30)), max_size=4)):
        if k < n:
            steps[k] *= factor  # 0: a repeated time (with other values); else a gap
    ts = START + np.cumsum(steps)
    hours = (ts - START) / 3600.0
    values = np.zeros((n, m))
    for j, spec_j in enumerate(spec.fields):
        if not spec_j.varies:  # rain and battery: carried, never judged
            values[:, j] = np.where(rng.random(n) < 0.2, 2.0, 0.0) if j == 1 else 12.5
    varying = [j for j, f in enumerate(spec.fields) if f.varies]
    noise = draw(st.sampled_from([1.0, 1.0, 3.0, 0.0]))
    scale = max(noise, 1.0)
    cycles: dict[int, npt.NDArray[np.float64]] = {}
    for j in varying:
        daily = draw(st.sampled_from([0.0, 2.0, 5.0, 8.0])) * scale
        weekly = draw(st.sampled_from([0.0, 0.0, 4.0])) * scale
        phase = rng.uniform(0, 2 * np.pi)
        cycles[j] = daily * np.sin(2 * np.pi * hours / 24.0 + phase)
        values[:, j] = 100.0 + cycles[j] + weekly * np.sin(2 * np.pi * hours / 168.0)
        values[:, j] += noise * rng.standard_normal(n)
    # Faults: where (a share of the series, mostly after the warm-up) and how big (in noise
    # sds); each on one varying field.
    faults = st.tuples(
        st.sampled_from(FAULTS),
        st.sampled_from(varying),
        st.floats(0.2, 0.95),
        st.sampled_from([3.0, 6.0, 15.0, 40.0]),
    )
    for fault, j, share, size in draw(st.lists(faults, min_size=1, max_size=4)):
        # A daily pattern is learned over days: lost only in the second half.
        at = int((max(share, 0.6) if fault == "lost" else share) * n)
        _inject(values[:, j], fault, at, size * scale, cycles[j], rng)
    # Unusable cells: absent, NaN, or outside the kind's range.
    absent = draw(st.sampled_from([0.0, 0.05, 0.3]))
    present = rng.random((n, m)) >= absent
    for before, j, bad in draw(
        st.lists(
            st.tuples(
                st.integers(0, 599), st.integers(0, m - 1), st.sampled_from([np.nan, -1e7, 1e9])
            ),
            max_size=4,
        )
    ):
        if before < n:
            values[n - 1 - before, j] = bad
    return [
        _Reading(device, t, v, p)
        for t, v, p in zip(ts.tolist(), values.tolist(), present.tolist(), strict=True)
    ]


def _inject(
    x: npt.NDArray[np.float64],
    fault: str,
    at: int,
    size: float,
    cycle: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> None:
    """One fault into a field's values from reading `at` on (in place)."""
    if fault == "spike":
        x[at] += size
    elif fault == "step":
        x[at:] += size / 3.0
    elif fault == "ramp":  # to `size` / 3 over 48 readings, then held
        x[at:] += np.minimum(np.arange(len(x) - at) / 48.0, 1.0) * size / 3.0
    elif fault == "burst":  # 6 to 24 readings of added noise
        end = min(len(x), at + int(rng.integers(6, 25)))
        x[at:end] += size / 3.0 * rng.standard_normal(end - at)
    else:  # the daily pattern is lost
        x[at:] -= cycle[at:]


@st.composite
def normal_cases(draw: st.DrawFn) -> Case:
    """Devices of one kind with faults, cut into batches and delivered badly.

    Readings are cut into batches in time order, then some arrive late (a later batch, after
    newer ones: skipped), some twice, and each batch may be shuffled.
    """
    kind = draw(st.sampled_from(["generic", "water_level"]))
    spec = kind_spec(kind)
    params = _params(draw(PARAMS))
    count = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    readings: list[_Reading] = []
    for d in range(draw(st.integers(1, 3))):
        readings += draw(_series(spec, f"d{d}", seed + d))
    rng = np.random.default_rng(seed)
    timed = sorted(readings, key=lambda r: r.ts)
    parts = deliver(draw, rng, timed, count, moves=4)
    batches = [
        (
            [r.device for r in part],
            [r.ts for r in part],
            [r.values for r in part],
            [r.present for r in part],
        )
        for part in parts
        if part
    ]
    return Case(kind, params, batches)
