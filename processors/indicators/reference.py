"""Slow, obviously correct twins of the vectorised indicators: plain loops, one value at a time.

They exist for the property tests (tests/test_indicators_*.py), which check that the fast
functions agree with them; nothing in production should call them. They share only the tables
(breakpoints, bands, scales) and processors/sun.py with the fast code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from processors.indicators.aqi import (
    AQI_BANDS,
    AQI_DECIMALS,
    AQI_POLLUTANTS,
    AQI_SCALE,
    AQI_UGM3_PER_UNIT,
)
from processors.indicators.ispu import (
    ISPU_BREAKPOINTS,
    ISPU_INDEX_POINTS,
    ISPU_POLLUTANTS,
    ISPU_SCALE,
    CategoryScale,
)
from processors.sun import sunrise_sunset

__all__ = [
    "DailyRef",
    "IndexRef",
    "aqi_ref",
    "aqi_subindex_ref",
    "flood_level_ref",
    "ispu_ref",
    "ispu_subindex_ref",
    "lamp_working_ref",
    "latest_reading_ref",
    "next_level_ref",
    "rate_of_rise_ref",
    "rolling_mean_ref",
    "streetlight_daily_ref",
    "time_to_next_level_ref",
]

NAN: Final = math.nan


@dataclass(frozen=True, slots=True)
class IndexRef:
    """One station's index, as the fast IndexResult holds it per element."""

    index: float
    level: int
    category: str
    colour: str
    colour_hex: str
    critical: str
    capped: bool


def ispu_subindex_ref(pollutant: str, conc: float) -> float:
    """ISPU sub-index of one concentration by walking the table's segments."""
    bp = ISPU_BREAKPOINTS[pollutant]
    ip = ISPU_INDEX_POINTS
    if math.isnan(conc):
        return NAN
    if conc <= bp[0]:
        return ip[0]
    if conc >= bp[-1]:
        return ip[-1]
    for k in range(len(bp) - 1):
        if bp[k] <= conc < bp[k + 1]:
            return (ip[k + 1] - ip[k]) / (bp[k + 1] - bp[k]) * (conc - bp[k]) + ip[k]
    raise AssertionError("unreachable")


def level_ref(index: float, scale: CategoryScale) -> int:
    """Band of an index after rounding half up; -1 for NaN."""
    if math.isnan(index):
        return -1
    reported = math.floor(index + 0.5)
    level = 0
    for k, lower in enumerate(scale.lower):
        if reported >= lower:
            level = k
    return level


def _combine_ref(subs: Sequence[tuple[str, float]], capped: bool, scale: CategoryScale) -> IndexRef:
    """Highest sub-index, first pollutant wins ties."""
    best_name, best = "", NAN
    for name, value in subs:
        if not math.isnan(value) and (math.isnan(best) or value > best):
            best_name, best = name, value
    level = level_ref(best, scale)
    named = level >= 0
    return IndexRef(
        index=best,
        level=level,
        category=scale.names[level] if named else "",
        colour=scale.colours[level] if named else "",
        colour_hex=scale.hex[level] if named else "",
        critical=best_name,
        capped=capped and not math.isnan(best),
    )


def ispu_ref(concentrations: Mapping[str, float]) -> IndexRef:
    """ISPU of one station from its concentrations (ug/m3)."""
    subs = [
        (p, ispu_subindex_ref(p, concentrations[p])) for p in ISPU_POLLUTANTS if p in concentrations
    ]
    capped = any(
        not math.isnan(concentrations[p]) and concentrations[p] > ISPU_BREAKPOINTS[p][-1]
        for p in ISPU_POLLUTANTS
        if p in concentrations
    )
    return _combine_ref(subs, capped, ISPU_SCALE)


def _aqi_ref_one(pollutant: str, conc_ugm3: float) -> tuple[float, bool]:
    """AQI sub-index and capped flag of one concentration."""
    if math.isnan(conc_ugm3):
        return NAN, False
    c = max(conc_ugm3 / AQI_UGM3_PER_UNIT[pollutant], 0.0)
    scale = 10.0 ** AQI_DECIMALS[pollutant]
    c = math.floor(c * scale + 1e-6) / scale
    bands = AQI_BANDS[pollutant]
    if c > bands[-1][1]:
        return float(bands[-1][3]), True
    for c_lo, c_hi, i_lo, i_hi in bands:
        if c_lo <= c <= c_hi:
            return (i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + i_lo, False
    return NAN, False  # below a table that starts above zero


def aqi_subindex_ref(pollutant: str, conc_ugm3: float) -> float:
    """AQI sub-index of one concentration (ug/m3)."""
    return _aqi_ref_one(pollutant, conc_ugm3)[0]


def aqi_ref(concentrations: Mapping[str, float]) -> IndexRef:
    """US AQI of one station from its concentrations (ug/m3)."""
    subs = []
    capped = False
    for p in AQI_POLLUTANTS:
        if p in concentrations:
            value, over = _aqi_ref_one(p, concentrations[p])
            subs.append((p, value))
            capped = capped or over
    return _combine_ref(subs, capped, AQI_SCALE)


def rolling_mean_ref(
    station: Sequence[int],
    ts: Sequence[float],
    values: Sequence[float],
    *,
    window_s: float,
    interval_s: Sequence[float],
    min_coverage: float,
) -> list[float]:
    """Trailing mean per reading by scanning every reading of the same station."""
    out = []
    for i in range(len(ts)):
        picked = [
            values[j]
            for j in range(len(ts))
            if station[j] == station[i]
            and ts[i] - window_s < ts[j] <= ts[i]
            and not math.isnan(values[j])
        ]
        n = len(picked)
        if n > 0 and n * interval_s[i] >= min_coverage * window_s:
            out.append(sum(picked) / n)
        else:
            out.append(NAN)
    return out


def flood_level_ref(level: float, waspada: float, siaga: float, awas: float) -> int:
    """Alert level of one reading: the highest level whose threshold the water reached."""
    if math.isnan(level):
        return -1
    alert = 0
    for k, threshold in enumerate((waspada, siaga, awas), start=1):
        if not math.isnan(threshold) and level >= threshold:
            alert = k
    return alert


def next_level_ref(level: float, waspada: float, siaga: float, awas: float) -> tuple[int, float]:
    """Lowest defined threshold above the level, and its level number; (-1, NaN) if none."""
    if math.isnan(level):
        return -1, NAN
    for k, threshold in enumerate((waspada, siaga, awas), start=1):
        if not math.isnan(threshold) and threshold > level:
            return k, threshold
    return -1, NAN


def time_to_next_level_ref(
    level: float, rate: float, waspada: float, siaga: float, awas: float
) -> float:
    """Hours to the next threshold at `rate` cm/h."""
    _, threshold = next_level_ref(level, waspada, siaga, awas)
    if math.isnan(threshold) or math.isnan(rate):
        return NAN
    if rate <= 0:
        return math.inf
    return (threshold - level) / rate


def latest_reading_ref(
    gauge: Sequence[int], ts: Sequence[float], values: Sequence[float], n_gauges: int
) -> tuple[list[float], list[float]]:
    """Latest valid reading per gauge; on equal times the later one in input order wins."""
    best_t = [NAN] * n_gauges
    best_v = [NAN] * n_gauges
    for g, t, v in zip(gauge, ts, values, strict=True):
        if math.isnan(v) or math.isnan(t):
            continue
        if math.isnan(best_t[g]) or t >= best_t[g]:
            best_t[g], best_v[g] = t, v
    return best_t, best_v


def rate_of_rise_ref(
    gauge: Sequence[int],
    ts: Sequence[float],
    level: Sequence[float],
    n_gauges: int,
    *,
    window_s: float,
    end_ts: Sequence[float] | None = None,
    min_points: int = 2,
) -> list[float]:
    """Least-squares slope (cm/h) per gauge from the textbook formula."""
    ends = end_ts if end_ts is not None else latest_reading_ref(gauge, ts, level, n_gauges)[0]
    out = []
    for g in range(n_gauges):
        end = ends[g]
        pts = [
            (t - end, y)
            for gg, t, y in zip(gauge, ts, level, strict=True)
            if gg == g and not math.isnan(y) and not math.isnan(t) and -window_s < t - end <= 0
        ]
        if len(pts) < min_points or len({t for t, _ in pts}) < 2:
            out.append(NAN)
            continue
        mt = sum(t for t, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxy = sum((t - mt) * (y - my) for t, y in pts)
        sxx = sum((t - mt) ** 2 for t, _ in pts)
        out.append(sxy / sxx * 3600.0)
    return out


def lamp_working_ref(
    lamp_on: float, dim_pct: float, power_w: float, rated_w: float, tolerance: float
) -> bool:
    """Lamp on and drawing within tolerance of its rated power at the dim level."""
    dim = 100.0 if math.isnan(dim_pct) else dim_pct
    expected = rated_w * dim / 100.0
    if lamp_on != 1.0 or not expected > 0:
        return False
    return abs(power_w - expected) <= tolerance * expected


@dataclass(frozen=True, slots=True)
class DailyRef:
    """Daily streetlight figures keyed by (lamp, day) and (district, day); absent = NaN."""

    availability: dict[tuple[int, int], float]
    day_burn_h: dict[tuple[int, int], float]
    energy_wh: dict[tuple[int, int], float]
    district_availability: dict[tuple[int, int], float]
    district_day_burn_h: dict[tuple[int, int], float]
    district_energy_wh: dict[tuple[int, int], float]


def streetlight_daily_ref(
    lat: Sequence[float],
    lon: Sequence[float],
    rated_w: Sequence[float],
    district: Sequence[int],
    readings: Sequence[tuple[int, float, float, float, float, float]],
    *,
    tolerance: float,
    grace_s: float,
    max_hold_s: float,
    utc_offset_s: float,
) -> DailyRef:
    """Daily figures from readings (lamp, ts, lamp_on, dim_pct, power_w, energy_wh), one by one."""
    night_n: dict[tuple[int, int], int] = {}
    work_n: dict[tuple[int, int], int] = {}
    burn: dict[tuple[int, int], float] = {}
    energy: dict[tuple[int, int], float] = {}
    # Python's sort is stable: equal (lamp, ts) keep their input order, as np.lexsort does.
    ordered = sorted(readings, key=lambda r: (r[0], r[1]))
    for i, (lamp, t, on, dim, power, _) in enumerate(ordered):
        day = math.floor((t + utc_offset_s) / 86400.0)
        key = (lamp, day)
        # The sunrise and sunset of the local-mean-solar day the reading falls in.
        solar_day = math.floor((t + 240.0 * lon[lamp]) / 86400.0)
        rise, sets = (float(x) for x in sunrise_sunset(lat[lamp], lon[lamp], solar_day * 86400.0))
        night = t + grace_s <= rise or t - grace_s >= sets
        daytime = t - grace_s > rise and t + grace_s < sets
        known = not math.isnan(on) and (on != 1.0 or not math.isnan(power))
        if night and known:
            night_n[key] = night_n.get(key, 0) + 1
            if lamp_working_ref(on, dim, power, rated_w[lamp], tolerance):
                work_n[key] = work_n.get(key, 0) + 1
        hold = 0.0
        if i + 1 < len(ordered) and ordered[i + 1][0] == lamp:
            hold = min(ordered[i + 1][1] - t, max_hold_s)
        burn[key] = burn.get(key, 0.0) + (hold / 3600.0 if on == 1.0 and daytime else 0.0)
    with_energy = [r for r in ordered if not math.isnan(r[5])]
    for prev, cur in itertools.pairwise(with_energy):
        if prev[0] != cur[0]:
            continue
        key = (cur[0], math.floor((cur[1] + utc_offset_s) / 86400.0))
        delta = cur[5] - prev[5] if cur[5] >= prev[5] else cur[5]
        energy[key] = energy.get(key, 0.0) + delta
    availability = {k: work_n.get(k, 0) / n for k, n in night_n.items()}

    def by_district(values: dict[tuple[int, int], float]) -> dict[tuple[int, int], list[float]]:
        groups: dict[tuple[int, int], list[float]] = {}
        for (lamp, day), value in values.items():
            groups.setdefault((district[lamp], day), []).append(value)
        return groups

    return DailyRef(
        availability=availability,
        day_burn_h=burn,
        energy_wh=energy,
        district_availability={k: sum(v) / len(v) for k, v in by_district(availability).items()},
        district_day_burn_h={k: sum(v) for k, v in by_district(burn).items()},
        district_energy_wh={k: sum(v) for k, v in by_district(energy).items()},
    )
