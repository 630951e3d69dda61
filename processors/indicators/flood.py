"""Flood alert level, rate of rise and time to the next level per river gauge, vectorised.

Sources are the sections of shared/reference/domain.md:

- 3.1 levels rise Normal < Waspada < Siaga < Awas. DKI Jakarta numbers them the other way
  (Siaga 4 = Normal, Siaga 3 = Waspada, Siaga 2 = Siaga, Siaga 1 = Awas); other agencies order or
  name them differently ([CONFLICT]), so labels are a per-agency 4-tuple (`FLOOD_LABELS`).
- 3.2 thresholds are per gauge, on the local staff-gauge zero, and get revised: they come in as
  arrays from the registry, never as constants here. A level is entered when the water is at or
  above its threshold (level_cm >= threshold): Katulampa at exactly 80 cm is Waspada, 79.9 cm
  Normal. A NaN threshold means the level is not defined at that gauge (e.g. Depok Siaga II/I
  are [UNVERIFIED]) and is never entered.
- 3.3 no Indonesian rule fixes a rate-of-rise alarm ([UNVERIFIED]); the rate here is the
  least-squares slope of the level over a trailing window (default 1 h) so that 5-10 cm manual
  quantisation (data README, pintu air quirks) does not turn into spikes, and the time to the
  next level extrapolates that rate linearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "AWAS",
    "FLOOD_LABELS",
    "FLOOD_LEVELS",
    "NORMAL",
    "SIAGA",
    "WASPADA",
    "FloodStatus",
    "FloodThresholds",
    "alert_labels",
    "flood_level",
    "flood_status",
    "latest_reading",
    "next_level",
    "rate_of_rise",
    "time_to_next_level",
]

_Float = npt.NDArray[np.float64]
_Int8 = npt.NDArray[np.int8]
_Int = npt.NDArray[np.intp]

NORMAL: Final = 0
WASPADA: Final = 1
SIAGA: Final = 2
AWAS: Final = 3
FLOOD_LEVELS: Final = ("Normal", "Waspada", "Siaga", "Awas")
FLOOD_LABELS: Final = MappingProxyType(
    {
        "generic": FLOOD_LEVELS,
        "dki_jakarta": ("Siaga 4", "Siaga 3", "Siaga 2", "Siaga 1"),
        "dki_jakarta_roman": ("Siaga IV", "Siaga III", "Siaga II", "Siaga I"),
    }
)


@dataclass(frozen=True, slots=True)
class FloodThresholds:
    """Per-gauge levels (cm) at which Waspada, Siaga and Awas start; NaN = level not defined."""

    waspada: _Float
    siaga: _Float
    awas: _Float

    def __post_init__(self) -> None:
        """Coerce to float arrays of one shape and check defined thresholds strictly increase."""
        arrays = [np.asarray(a, dtype=np.float64) for a in (self.waspada, self.siaga, self.awas)]
        if not arrays[0].shape == arrays[1].shape == arrays[2].shape:
            raise ValueError("waspada, siaga and awas thresholds must have one shape")
        for name, a in zip(("waspada", "siaga", "awas"), arrays, strict=True):
            object.__setattr__(self, name, a)
        for lower, upper in ((0, 1), (1, 2), (0, 2)):
            a, b = arrays[lower], arrays[upper]
            if np.any(~np.isnan(a) & ~np.isnan(b) & ~(a < b)):
                raise ValueError("thresholds must rise strictly: waspada < siaga < awas")

    @classmethod
    def from_jakarta_siaga(
        cls, siaga3: npt.ArrayLike, siaga2: npt.ArrayLike, siaga1: npt.ArrayLike
    ) -> FloodThresholds:
        """Thresholds from DKI Jakarta columns: Siaga 3 = Waspada, 2 = Siaga, 1 = Awas."""
        return cls(
            np.asarray(siaga3, dtype=np.float64),
            np.asarray(siaga2, dtype=np.float64),
            np.asarray(siaga1, dtype=np.float64),
        )

    def stacked(self) -> _Float:
        """Thresholds as one array, levels Waspada, Siaga, Awas along the first axis."""
        return np.stack([self.waspada, self.siaga, self.awas])


@dataclass(frozen=True, slots=True)
class FloodStatus:
    """The live flood indicator per gauge (arrays of length n_gauges)."""

    ts: _Float  # time of the latest valid reading; NaN if the gauge has none
    level_cm: _Float  # latest valid level
    alert: _Int8  # NORMAL..AWAS; -1 where the level is unknown
    rate_cm_h: _Float  # least-squares slope over the trailing window; NaN if too few readings
    next_alert: _Int8  # the level that would be entered next; -1 if none (Awas, or undefined)
    hours_to_next: _Float  # at the current rate; inf if not rising; NaN if no next level


def flood_level(level_cm: npt.ArrayLike, thresholds: FloodThresholds) -> _Int8:
    """Alert level (NORMAL..AWAS) where level_cm >= threshold enters the level; -1 for NaN."""
    level = np.asarray(level_cm, dtype=np.float64)
    alert = np.where(
        level >= thresholds.awas,
        AWAS,
        np.where(
            level >= thresholds.siaga,
            SIAGA,
            np.where(level >= thresholds.waspada, WASPADA, NORMAL),
        ),
    )
    return np.where(np.isnan(level), -1, alert).astype(np.int8)


def next_level(level_cm: npt.ArrayLike, thresholds: FloodThresholds) -> tuple[_Int8, _Float]:
    """The next level above the current one with a defined threshold, and that threshold (cm).

    -1 and NaN where there is none: already Awas, nothing defined above, or the level is NaN.
    """
    level = np.asarray(level_cm, dtype=np.float64)
    stack = thresholds.stacked()
    above = stack > level  # NaN thresholds and NaN levels compare False: never "next"
    has_next = above.any(axis=0)
    first = np.argmax(above, axis=0)  # thresholds rise, so the first one above is the lowest
    threshold = np.take_along_axis(np.broadcast_to(stack, above.shape), first[None], axis=0)[0]
    nxt = np.where(has_next, first + 1, -1).astype(np.int8)
    return nxt, np.where(has_next, threshold, np.nan)


def time_to_next_level(
    level_cm: npt.ArrayLike, rate_cm_h: npt.ArrayLike, thresholds: FloodThresholds
) -> _Float:
    """Hours until the next level at the current rate; inf if not rising, NaN if no next level."""
    level = np.asarray(level_cm, dtype=np.float64)
    rate = np.asarray(rate_cm_h, dtype=np.float64)
    _, threshold = next_level(level, thresholds)
    rising = rate > 0
    gap = threshold - level
    with np.errstate(over="ignore"):  # a vanishing positive rate means never: inf is the answer
        hours = np.divide(
            gap, rate, out=np.full(np.broadcast(gap, rate).shape, np.inf), where=rising
        )
    return np.where(np.isnan(threshold) | np.isnan(rate), np.nan, hours)


def latest_reading(
    gauge: npt.ArrayLike, ts: npt.ArrayLike, values: npt.ArrayLike, n_gauges: int
) -> tuple[_Float, _Float]:
    """Time and value of each gauge's latest non-NaN reading (NaN if none); ties: last given."""
    g, t, v = _readings(gauge, ts, values, n_gauges)
    keep = np.flatnonzero(~np.isnan(v) & ~np.isnan(t))
    order = keep[np.lexsort((keep, t[keep], g[keep]))]
    last = np.ones(order.size, dtype=np.bool_)
    last[:-1] = g[order[1:]] != g[order[:-1]]
    pick = order[last]
    ts_out = np.full(n_gauges, np.nan)
    value_out = np.full(n_gauges, np.nan)
    ts_out[g[pick]] = t[pick]
    value_out[g[pick]] = v[pick]
    return ts_out, value_out


def rate_of_rise(
    gauge: npt.ArrayLike,
    ts: npt.ArrayLike,
    level_cm: npt.ArrayLike,
    n_gauges: int,
    *,
    window_s: float = 3600.0,
    end_ts: npt.ArrayLike | None = None,
    min_points: int = 2,
) -> _Float:
    """Least-squares slope of level (cm/h) per gauge over readings in (end - window_s, end].

    `end_ts` (scalar or per gauge) defaults to each gauge's latest valid reading. Timestamps may
    be irregular, out of order or repeated. NaN where fewer than `min_points` valid readings fall
    in the window or they all share one timestamp.
    """
    if window_s <= 0 or min_points < 2:
        raise ValueError("window_s must be > 0 and min_points >= 2")
    g, t, y = _readings(gauge, ts, level_cm, n_gauges)
    if end_ts is None:
        end, _ = latest_reading(g, t, y, n_gauges)
    else:
        end = np.broadcast_to(np.asarray(end_ts, dtype=np.float64), (n_gauges,))
    valid = ~np.isnan(y) & ~np.isnan(t)
    idx = np.flatnonzero(valid)
    gi = g[idx]
    rel = t[idx] - end[gi]  # seconds before the window end: small numbers, stable sums
    inside = (rel > -window_s) & (rel <= 0.0)
    gi, rel, yi = gi[inside], rel[inside], y[idx][inside]
    n = np.bincount(gi, minlength=n_gauges)
    safe_n = np.maximum(n, 1)
    mean_t = np.bincount(gi, weights=rel, minlength=n_gauges) / safe_n
    mean_y = np.bincount(gi, weights=yi, minlength=n_gauges) / safe_n
    dt = rel - mean_t[gi]
    sxx = np.bincount(gi, weights=dt * dt, minlength=n_gauges)
    sxy = np.bincount(gi, weights=dt * (yi - mean_y[gi]), minlength=n_gauges)
    t_min = np.full(n_gauges, np.inf)
    t_max = np.full(n_gauges, -np.inf)
    np.minimum.at(t_min, gi, rel)
    np.maximum.at(t_max, gi, rel)
    # The span test (not sxx > 0) decides "one timestamp only": means of equal values can carry
    # rounding noise that would make sxx a tiny positive number and the slope garbage.
    ok = (n >= min_points) & (t_max > t_min)
    slope = np.divide(sxy, sxx, out=np.full(n_gauges, np.nan), where=ok)
    result: _Float = slope * 3600.0
    return result


def flood_status(
    gauge: npt.ArrayLike,
    ts: npt.ArrayLike,
    level_cm: npt.ArrayLike,
    thresholds: FloodThresholds,
    *,
    window_s: float = 3600.0,
    min_points: int = 2,
) -> FloodStatus:
    """The live flood indicator for gauges 0..n-1 (n = len of the thresholds) from readings."""
    n_gauges = int(np.asarray(thresholds.awas).shape[0])
    last_ts, last_level = latest_reading(gauge, ts, level_cm, n_gauges)
    rate = rate_of_rise(
        gauge, ts, level_cm, n_gauges, window_s=window_s, end_ts=last_ts, min_points=min_points
    )
    nxt, _ = next_level(last_level, thresholds)
    return FloodStatus(
        ts=last_ts,
        level_cm=last_level,
        alert=flood_level(last_level, thresholds),
        rate_cm_h=rate,
        next_alert=nxt,
        hours_to_next=time_to_next_level(last_level, rate, thresholds),
    )


def alert_labels(
    alert: npt.ArrayLike, labels: tuple[str, str, str, str] = FLOOD_LEVELS
) -> npt.NDArray[np.str_]:
    """Label per alert level, e.g. FLOOD_LABELS["dki_jakarta"]; "" where the level is -1."""
    if len(labels) != 4:
        raise ValueError("labels must name the four levels Normal, Waspada, Siaga, Awas")
    a = np.asarray(alert, dtype=np.intp)
    return np.asarray((*labels, ""))[np.where((a >= 0) & (a <= AWAS), a, 4)]


def _readings(
    gauge: npt.ArrayLike, ts: npt.ArrayLike, values: npt.ArrayLike, n_gauges: int
) -> tuple[_Int, _Float, _Float]:
    """Readings as 1-D arrays of one length, gauge rows checked against n_gauges."""
    g = np.asarray(gauge, dtype=np.intp)
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if not (g.shape == t.shape == v.shape) or g.ndim != 1:
        raise ValueError("gauge, ts and values must be 1-D arrays of one length")
    if g.size and (g.min() < 0 or g.max() >= n_gauges):
        raise ValueError(f"gauge rows must be within 0..{n_gauges - 1}")
    return g, t, v
