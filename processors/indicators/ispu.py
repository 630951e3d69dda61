"""ISPU (Indeks Standar Pencemar Udara) per Permen LHK P.14/MENLHK/SETJEN/KUM.1/7/2020, vectorised.

Sources are the sections of shared/reference/domain.md:

- 1.3 breakpoint table (all ug/m3), with its [CONFLICT] notes resolved as the reference says:
  SO2 top 1200, NO2 80/200, CO 4000/8000/15000/30000/45000, and the one concentration of the
  "> 300" row maps to ISPU 500 (the last segment runs 300 -> 500).
- 1.5 sub-index by linear interpolation, I = (Ia - Ib) / (Xa - Xb) * (Xx - Xb) + Ib, on continuous
  segments (0-15.5 -> 0-50, 15.5-55.4 -> 50-100, ...). The alternative reading with US-style
  discrete edges (15.6-55.4 -> 51-100) differs by at most about one index point; continuous
  segments need no truncation of the concentration and have no gaps between bands.
- Above the top concentration the index is capped at 500 and flagged (`capped`): how to
  extrapolate there is [UNVERIFIED] in the regulation.
- 1.6 station ISPU = highest sub-index; its pollutant is the critical parameter ("parameter
  kritis"). Ties go to the first pollutant in the regulation's column order.
- 1.2 categories with the 2020 bands 0-50, 51-100, 101-200, 201-300, >300. The index is published
  as an integer, so a non-integer index is rounded half up first and the integer is categorised:
  50.49 -> 50 Baik, 50.5 -> 51 Sedang, 100.5 -> 101 Tidak Sehat. Colour hex codes are those
  reported for the KLH ISPU API ([UNVERIFIED]: the API itself was not seen).
- 1.4 averaging: every column of the regulation table reads "24 jam", so every default window is
  24 h. [CONFLICT]: one implementation averages CO over 8 h and the 1997 scheme used 8 h CO and
  1 h O3/NO2; pass `windows` to override.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ISPU_AVERAGING_S",
    "ISPU_BREAKPOINTS",
    "ISPU_INDEX_POINTS",
    "ISPU_POLLUTANTS",
    "ISPU_SCALE",
    "CategoryScale",
    "IndexResult",
    "IspuResult",
    "combine_subindices",
    "ispu_averages",
    "ispu_index",
    "ispu_subindex",
    "rolling_mean",
    "round_half_up",
]

_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_Int = npt.NDArray[np.intp]
_Str = npt.NDArray[np.str_]

# Regulation column order; it also breaks ties for the critical pollutant.
ISPU_POLLUTANTS: Final = ("pm10", "pm25", "so2", "co", "o3", "no2", "hc")
ISPU_INDEX_POINTS: Final = (0.0, 50.0, 100.0, 200.0, 300.0, 500.0)
ISPU_BREAKPOINTS: Final = MappingProxyType(
    {
        "pm10": (0.0, 50.0, 150.0, 350.0, 420.0, 500.0),
        "pm25": (0.0, 15.5, 55.4, 150.4, 250.4, 500.0),
        "so2": (0.0, 52.0, 180.0, 400.0, 800.0, 1200.0),
        "co": (0.0, 4000.0, 8000.0, 15000.0, 30000.0, 45000.0),
        "o3": (0.0, 120.0, 235.0, 400.0, 800.0, 1000.0),
        "no2": (0.0, 80.0, 200.0, 1130.0, 2260.0, 3000.0),
        "hc": (0.0, 45.0, 100.0, 215.0, 432.0, 648.0),
    }
)
ISPU_AVERAGING_S: Final = MappingProxyType(dict.fromkeys(ISPU_POLLUTANTS, 24 * 3600.0))


@dataclass(frozen=True, slots=True)
class CategoryScale:
    """Category bands of an air index: each band's lowest published integer, names and colours."""

    lower: tuple[int, ...]
    names: tuple[str, ...]
    colours: tuple[str, ...]
    hex: tuple[str, ...]

    def __post_init__(self) -> None:
        """Check the bands are increasing and every band has a name and colour."""
        n = len(self.lower)
        if not (len(self.names) == len(self.colours) == len(self.hex) == n) or n == 0:
            raise ValueError("a category scale needs one name, colour and hex per band")
        if self.lower[0] != 0 or any(b <= a for a, b in itertools.pairwise(self.lower)):
            raise ValueError(f"band lower bounds must start at 0 and increase: {self.lower}")

    def level(self, index: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """Band number per index value after rounding half up; -1 where the index is NaN."""
        reported = round_half_up(index)
        finite = ~np.isnan(reported)
        band = np.searchsorted(np.asarray(self.lower, dtype=np.float64), reported, side="right")
        return np.where(finite, band - 1, -1).astype(np.int8)


ISPU_SCALE: Final = CategoryScale(
    lower=(0, 51, 101, 201, 301),
    names=("Baik", "Sedang", "Tidak Sehat", "Sangat Tidak Sehat", "Berbahaya"),
    colours=("hijau", "biru", "kuning", "merah", "hitam"),
    hex=("#00cc00", "#0000cc", "#cccc00", "#cc0000", "#000000"),  # as reported, [UNVERIFIED]
)


@dataclass(frozen=True, slots=True)
class IndexResult:
    """An air index per station: value, critical pollutant, category and colour (NaN-safe)."""

    index: _Float  # highest sub-index, unrounded; NaN where no pollutant was measured
    reported: _Float  # `index` rounded half up to the published integer; NaN stays NaN
    level: npt.NDArray[np.int8]  # band number in the scale; -1 where the index is NaN
    category: _Str  # band name; "" where the index is NaN
    colour: _Str  # colour name; "" where the index is NaN
    colour_hex: _Str  # "#rrggbb"; "" where the index is NaN
    critical: _Str  # pollutant that sets the index; "" where the index is NaN
    capped: _Bool  # some concentration was above its table's top and was capped
    subindices: Mapping[str, _Float]  # per pollutant given, NaN where it is missing


IspuResult = IndexResult


def round_half_up(index: npt.ArrayLike) -> _Float:
    """Round to the nearest integer, halves upwards (np.round would send 50.5 to 50)."""
    result: _Float = np.floor(np.asarray(index, dtype=np.float64) + 0.5)
    return result


def ispu_subindex(pollutant: str, conc: npt.ArrayLike) -> _Float:
    """ISPU sub-index of one pollutant from ug/m3 concentrations; NaN stays NaN, capped at 500."""
    breakpoints = _breakpoints(pollutant)
    # np.interp is exactly the continuous piecewise-linear table: it returns the band value at a
    # breakpoint, clamps below 0 (sensor zero drift) to 0 and above the top to 500.
    return np.asarray(
        np.interp(np.asarray(conc, dtype=np.float64), breakpoints, ISPU_INDEX_POINTS),
        dtype=np.float64,
    )


def ispu_index(concentrations: Mapping[str, npt.ArrayLike]) -> IndexResult:
    """ISPU per station from concentrations (ug/m3) keyed by pollutant, broadcast together."""
    _check_keys(concentrations, ISPU_POLLUTANTS)
    known = [p for p in ISPU_POLLUTANTS if p in concentrations]
    arrays = np.broadcast_arrays(*(np.asarray(concentrations[p], dtype=np.float64) for p in known))
    subindices = {p: ispu_subindex(p, a) for p, a in zip(known, arrays, strict=True)}
    capped = np.zeros(arrays[0].shape, dtype=np.bool_)
    for p, a in zip(
        known, arrays, strict=True
    ):  # one pass per pollutant (7 at most), never per station
        capped |= a > ISPU_BREAKPOINTS[p][-1]
    return combine_subindices(subindices, capped, ISPU_SCALE)


def combine_subindices(
    subindices: Mapping[str, _Float], capped: _Bool, scale: CategoryScale
) -> IndexResult:
    """Overall index = highest sub-index per station; ties go to the first key of `subindices`."""
    names = tuple(subindices)
    if not names:
        raise ValueError("no pollutant given")
    stack = np.stack([subindices[p] for p in names])
    present = ~np.isnan(stack)
    any_present = present.any(axis=0)
    # The first highest sub-index, -inf in place of NaN (what argmax over axis 0 gives, but
    # one pass per pollutant: numpy's argmax across a short first axis is several times
    # slower). From the last pollutant to the first, so the first of equal ones stays.
    filled = np.where(present, stack, -np.inf)
    top = filled.max(axis=0)
    best = np.zeros(top.shape, dtype=np.intp)
    for j in range(len(names) - 1, -1, -1):
        np.copyto(best, j, where=filled[j] == top)
    index = np.where(any_present, np.take_along_axis(stack, best[None, ...], axis=0)[0], np.nan)
    level = scale.level(index)
    critical = np.take(np.asarray((*names, "")), np.where(any_present, best, len(names)))
    return IndexResult(
        index=index,
        reported=round_half_up(index),
        level=level,
        category=np.take(np.asarray((*scale.names, "")), level),
        colour=np.take(np.asarray((*scale.colours, "")), level),
        colour_hex=np.take(np.asarray((*scale.hex, "")), level),
        critical=critical,
        capped=capped & any_present,
        subindices=MappingProxyType(dict(subindices)),
    )


def rolling_mean(
    station: npt.ArrayLike,
    ts: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    window_s: float,
    interval_s: npt.ArrayLike,
    min_coverage: float = 0.75,
) -> _Float:
    """Trailing mean over (t - window_s, t] of each reading's station, in input order.

    NaN values are skipped. The mean is NaN unless the valid readings in the window cover at
    least `min_coverage` of it: count * interval_s >= min_coverage * window_s, where interval_s
    is the station's expected reporting interval (scalar or per reading). Readings of a station
    at the same time share one window, so the result does not depend on input order.
    """
    st = np.asarray(station)
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if not (st.shape == t.shape == v.shape) or t.ndim != 1:
        raise ValueError("station, ts and values must be 1-D arrays of one length")
    if window_s <= 0 or not 0.0 <= min_coverage <= 1.0:
        raise ValueError("window_s must be > 0 and min_coverage within [0, 1]")
    interval = np.broadcast_to(np.asarray(interval_s, dtype=np.float64), t.shape)
    n = t.size
    order = np.lexsort((t, st))
    st_s, t_s, v_s = st[order], t[order], v[order]
    new_segment = np.ones(n, dtype=np.bool_)
    new_segment[1:] = st_s[1:] != st_s[:-1]
    seg_id = np.cumsum(new_segment) - 1
    seg_first = np.flatnonzero(new_segment)
    seg_lo = seg_first[seg_id]
    seg_hi = np.append(seg_first[1:], n)[seg_id]
    start = _bisect_right(t_s, seg_lo, seg_hi, t_s - window_s)
    stop = _bisect_right(t_s, seg_lo, seg_hi, t_s)
    valid = ~np.isnan(v_s)
    csum = np.concatenate(([0.0], np.cumsum(np.where(valid, v_s, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(valid)))
    count = ccount[stop] - ccount[start]
    total = csum[stop] - csum[start]
    covered = (count > 0) & (count * interval[order] >= min_coverage * window_s)
    mean_sorted = np.where(covered, total / np.maximum(count, 1), np.nan)
    result = np.empty(n, dtype=np.float64)
    result[order] = mean_sorted
    return result


def ispu_averages(
    station: npt.ArrayLike,
    ts: npt.ArrayLike,
    concentrations: Mapping[str, npt.ArrayLike],
    *,
    interval_s: npt.ArrayLike,
    windows: Mapping[str, float] = ISPU_AVERAGING_S,
    min_coverage: float = 0.75,
) -> dict[str, _Float]:
    """Rolling averages of each pollutant over its ISPU window, per reading (see rolling_mean)."""
    _check_keys(concentrations, ISPU_POLLUTANTS)
    return {
        p: rolling_mean(
            station,
            ts,
            concentrations[p],
            window_s=windows[p],
            interval_s=interval_s,
            min_coverage=min_coverage,
        )
        for p in ISPU_POLLUTANTS
        if p in concentrations
    }


def _bisect_right(sorted_ts: _Float, lo: _Int, hi: _Int, target: _Float) -> _Int:
    """Per element, the first j in [lo, hi) with sorted_ts[j] > target (hi if none).

    A binary search run on all elements at once: log2(longest segment) numpy passes, exact
    comparisons (no offset keys that could round at the window edge).
    """
    lo = lo.copy()
    hi = hi.copy()
    last = max(sorted_ts.size - 1, 0)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = np.minimum((lo + hi) // 2, last)
        above = sorted_ts[mid] > target
        hi = np.where(active & above, mid, hi)
        lo = np.where(active & ~above, mid + 1, lo)


def _breakpoints(pollutant: str) -> tuple[float, ...]:
    """The concentration breakpoints of a pollutant; ValueError names the known ones."""
    try:
        return ISPU_BREAKPOINTS[pollutant]
    except KeyError:
        raise ValueError(
            f"unknown ISPU pollutant {pollutant!r}; known: {', '.join(ISPU_POLLUTANTS)}"
        ) from None


def _check_keys(given: Mapping[str, object], known: tuple[str, ...]) -> None:
    """ValueError on an empty mapping or an unknown pollutant key."""
    unknown = sorted(set(given) - set(known))
    if unknown or not given:
        raise ValueError(f"pollutants must be some of {', '.join(known)}; got {sorted(given)}")
