"""Streetlight (PJU) indicators per lamp and per district per local day, vectorised over lamps.

Sources are the sections of shared/reference/domain.md:

- 4.2/4.3 lamps are switched by photocell or timer around sunset and sunrise; the night a lamp
  must cover is sunset to sunrise at the lamp (processors/sun.sunrise_sunset, NOAA, about +-1 min,
  computed once per lamp and solar day). Photocells switch some minutes off the astronomical
  times (ANSI turn-on near 16 lx, off near 65 lx), so a reading counts as "should be on" only
  if the sun is down from `grace_s` before to `grace_s` after it, and "should be off" only if
  the sun is up over that span: the twilight in between judges neither outages nor day-burning.
  The 30 min default is our choice, not a standard.
- 4.4 fault classes (practice, not an Indonesian standard): lamp out, day-burner, power off its
  rating. "Working" = lamp_on and power within `tolerance` of rated_w * dim_pct / 100; the 20 %
  default is [UNVERIFIED] (no standard gives a number). A missing dim_pct means full output; a
  lamp dimmed to 0 % gives no light and is not working.

Definitions (all per lamp and local day, WIB = UTC+7 by default):

- availability: working readings / should-be-on readings with a known state (lamp_on known, and
  power known when on). Reading-weighted, so it assumes the lamp's regular reporting interval.
  A silent controller is not counted as a failed lamp here (offline is a detector's finding).
  District availability is the mean over its lamps with such readings: the expected share of
  lamps working at a random moment of the night.
- day_burn_h: hours the lamp was on while it should be off, sample-and-hold: each reading's state
  lasts until the lamp's next reading, at most `max_hold_s`; the last reading holds for nothing.
  Daytime never spans local midnight in the tropics, so no interval needs splitting by day.
- energy_wh: increase of the cumulative energy_wh counter between consecutive readings, credited
  to the day of the later reading; a drop is a counter reset, after which the new reading counts
  from zero. This is last-minus-first of the day plus the interval across midnight (about 2 % of
  a night at 15 min reporting), so the days of a period sum to the period's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from processors.sun import sunrise_sunset

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_MAX_HOLD_S",
    "DEFAULT_TOLERANCE",
    "WIB_OFFSET_S",
    "LampFleet",
    "StreetlightDaily",
    "lamp_should_be_off",
    "lamp_should_be_on",
    "lamp_working",
    "local_day",
    "streetlight_daily",
]

_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_Int = npt.NDArray[np.intp]

WIB_OFFSET_S: Final = 7 * 3600.0  # Purbalingga, no daylight saving (domain.md header)
DEFAULT_TOLERANCE: Final = 0.2  # [UNVERIFIED] domain.md 4.4
DEFAULT_GRACE_S: Final = 1800.0
DEFAULT_MAX_HOLD_S: Final = 1800.0
_DAY_S: Final = 86400.0


@dataclass(frozen=True, slots=True)
class LampFleet:
    """Registry facts per lamp row: position, rated power (W) and district row."""

    lat: _Float
    lon: _Float
    rated_w: _Float
    district: _Int
    n_districts: int = 0  # 0: one more than the highest district row

    def __post_init__(self) -> None:
        """Coerce to 1-D arrays of one length and check districts and ratings."""
        lat = np.asarray(self.lat, dtype=np.float64)
        lon = np.asarray(self.lon, dtype=np.float64)
        rated = np.asarray(self.rated_w, dtype=np.float64)
        district = np.asarray(self.district, dtype=np.intp)
        if not (lat.shape == lon.shape == rated.shape == district.shape) or lat.ndim != 1:
            raise ValueError("lat, lon, rated_w and district must be 1-D arrays of one length")
        if np.any(~(rated > 0)):
            raise ValueError("rated_w must be > 0 for every lamp")
        n_districts = self.n_districts or (int(district.max()) + 1 if district.size else 0)
        if district.size and (district.min() < 0 or district.max() >= n_districts):
            raise ValueError(f"district rows must be within 0..{n_districts - 1}")
        for name, value in (
            ("lat", lat),
            ("lon", lon),
            ("rated_w", rated),
            ("district", district),
            ("n_districts", n_districts),
        ):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        """Number of lamps."""
        return int(self.lat.shape[0])


@dataclass(frozen=True, slots=True)
class StreetlightDaily:
    """Daily indicators: lamp arrays are (lamps, days), district arrays (districts, days)."""

    days: npt.NDArray[np.int64]  # local day numbers: days since 1970-01-01 in local time
    availability: _Float  # NaN: no should-be-on reading with a known state
    night_readings: _Int  # should-be-on readings with a known state
    day_burn_h: _Float  # NaN: no reading that day
    energy_wh: _Float  # NaN: no counter increase measurable that day
    district_availability: _Float  # mean over lamps with availability; NaN if none
    district_lamps: _Int  # lamps with availability
    district_day_burn_h: _Float  # sum over lamps with readings; NaN if none
    district_energy_wh: _Float  # sum over lamps with energy; NaN if none


def local_day(ts: npt.ArrayLike, utc_offset_s: float = WIB_OFFSET_S) -> npt.NDArray[np.int64]:
    """Local calendar day number (days since 1970-01-01 local) of epoch seconds."""
    t = np.asarray(ts, dtype=np.float64)
    return np.floor((t + utc_offset_s) / _DAY_S).astype(np.int64)


def lamp_working(
    lamp_on: npt.ArrayLike,
    dim_pct: npt.ArrayLike,
    power_w: npt.ArrayLike,
    rated_w: npt.ArrayLike,
    tolerance: float = DEFAULT_TOLERANCE,
) -> _Bool:
    """Lamp on and drawing within `tolerance` of rated_w * dim_pct / 100 (missing dim = 100 %)."""
    dim = np.asarray(dim_pct, dtype=np.float64)
    expected = np.asarray(rated_w, dtype=np.float64) * np.where(np.isnan(dim), 100.0, dim) / 100.0
    power = np.asarray(power_w, dtype=np.float64)
    on = np.asarray(lamp_on, dtype=np.float64) == 1.0
    result: _Bool = on & (expected > 0) & (np.abs(power - expected) <= tolerance * expected)
    return result


def lamp_should_be_on(
    lat: npt.ArrayLike, lon: npt.ArrayLike, ts: npt.ArrayLike, grace_s: float = DEFAULT_GRACE_S
) -> _Bool:
    """Sun down at the lamp from grace_s before to grace_s after ts."""
    t = np.asarray(ts, dtype=np.float64)
    return _night_and_day(*_rise_set(lat, lon, t), t, grace_s)[0]


def lamp_should_be_off(
    lat: npt.ArrayLike, lon: npt.ArrayLike, ts: npt.ArrayLike, grace_s: float = DEFAULT_GRACE_S
) -> _Bool:
    """Sun up at the lamp from grace_s before to grace_s after ts."""
    t = np.asarray(ts, dtype=np.float64)
    return _night_and_day(*_rise_set(lat, lon, t), t, grace_s)[1]


def streetlight_daily(
    fleet: LampFleet,
    lamp: npt.ArrayLike,
    ts: npt.ArrayLike,
    lamp_on: npt.ArrayLike,
    dim_pct: npt.ArrayLike,
    power_w: npt.ArrayLike,
    energy_wh: npt.ArrayLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    grace_s: float = DEFAULT_GRACE_S,
    max_hold_s: float = DEFAULT_MAX_HOLD_S,
    utc_offset_s: float = WIB_OFFSET_S,
) -> StreetlightDaily:
    """Availability, day-burn hours and energy per lamp and district for each local day."""
    row = np.asarray(lamp, dtype=np.intp)
    t = np.asarray(ts, dtype=np.float64)
    on_raw = np.asarray(lamp_on, dtype=np.float64)
    dim = np.asarray(dim_pct, dtype=np.float64)
    power = np.asarray(power_w, dtype=np.float64)
    energy = np.asarray(energy_wh, dtype=np.float64)
    if row.ndim != 1 or any(a.shape != row.shape for a in (t, on_raw, dim, power, energy)):
        raise ValueError("lamp, ts, lamp_on, dim_pct, power_w, energy_wh: 1-D, one length")
    n_lamps = len(fleet)
    if row.size and (row.min() < 0 or row.max() >= n_lamps):
        raise ValueError(f"lamp rows must be within 0..{n_lamps - 1}")
    if not np.all(np.isfinite(t)):
        raise ValueError("timestamps must be finite")

    day = local_day(t, utc_offset_s)
    first_day = int(day.min()) if day.size else 0
    n_days = int(day.max()) - first_day + 1 if day.size else 0
    n_cells = n_lamps * n_days
    cell = row * n_days + (day - first_day)
    # Sunrise and sunset once per lamp and solar day, not per reading: the sun model is the
    # costly part, and a lamp reports many times a day.
    solar_day = _solar_day(fleet.lon[row], t)
    first_solar = int(solar_day.min()) if solar_day.size else 0
    n_solar = int(solar_day.max()) - first_solar + 1 if solar_day.size else 0
    rise, sets = sunrise_sunset(
        fleet.lat[:, None],
        fleet.lon[:, None],
        (first_solar + np.arange(n_solar, dtype=np.float64)) * _DAY_S,
    )
    at = (row, solar_day - first_solar)
    night, daytime = _night_and_day(rise[at], sets[at], t, grace_s)
    on = on_raw == 1.0

    # Availability: only readings whose state is known can say working or not.
    known = ~np.isnan(on_raw) & (~on | ~np.isnan(power))
    counted = night & known
    working = lamp_working(on_raw, dim, power, fleet.rated_w[row], tolerance)
    n_night = np.bincount(cell[counted], minlength=n_cells)
    n_work = np.bincount(cell[counted & working], minlength=n_cells)
    availability = np.divide(
        n_work, n_night, out=np.full(n_cells, np.nan), where=n_night > 0, dtype=np.float64
    )

    # Day-burn: sample-and-hold until the lamp's next reading, capped at max_hold_s.
    order = np.lexsort((t, row))
    same_next = row[order][1:] == row[order][:-1]
    hold = np.zeros(row.size)
    hold[:-1] = np.where(same_next, np.minimum(np.diff(t[order]), max_hold_s), 0.0)
    burn_s = np.bincount(
        cell[order], weights=np.where((on & daytime)[order], hold, 0.0), minlength=n_cells
    )
    n_read = np.bincount(cell, minlength=n_cells)
    day_burn_h = np.where(n_read > 0, burn_s / 3600.0, np.nan)

    # Energy: counter increases between consecutive valid readings, resets restart from zero.
    has_e = np.flatnonzero(~np.isnan(energy))
    e_order = has_e[np.lexsort((t[has_e], row[has_e]))]
    e = energy[e_order]
    pair = row[e_order][1:] == row[e_order][:-1]
    delta = np.where(e[1:] >= e[:-1], e[1:] - e[:-1], e[1:])[pair]
    target = cell[e_order][1:][pair]
    e_sum = np.bincount(target, weights=delta, minlength=n_cells)
    e_count = np.bincount(target, minlength=n_cells)
    energy_day = np.where(e_count > 0, e_sum, np.nan)

    shape = (n_lamps, n_days)
    district_cell = (fleet.district[:, None] * n_days + np.arange(n_days)).ravel()
    n_dcells = fleet.n_districts * n_days
    d_avail, d_lamps = _district_sum(availability, district_cell, n_dcells)
    d_burn, d_burn_n = _district_sum(day_burn_h, district_cell, n_dcells)
    d_energy, d_energy_n = _district_sum(energy_day, district_cell, n_dcells)
    d_shape = (fleet.n_districts, n_days)
    return StreetlightDaily(
        days=np.arange(first_day, first_day + n_days, dtype=np.int64),
        availability=availability.reshape(shape),
        night_readings=n_night.reshape(shape),
        day_burn_h=day_burn_h.reshape(shape),
        energy_wh=energy_day.reshape(shape),
        district_availability=np.divide(
            d_avail, d_lamps, out=np.full(n_dcells, np.nan), where=d_lamps > 0
        ).reshape(d_shape),
        district_lamps=d_lamps.reshape(d_shape),
        district_day_burn_h=np.where(d_burn_n > 0, d_burn, np.nan).reshape(d_shape),
        district_energy_wh=np.where(d_energy_n > 0, d_energy, np.nan).reshape(d_shape),
    )


def _solar_day(lon: npt.ArrayLike, ts: _Float) -> npt.NDArray[np.int64]:
    """Day number in local mean solar time: its midnight falls deep in the night everywhere."""
    return np.floor((ts + 240.0 * np.asarray(lon, dtype=np.float64)) / _DAY_S).astype(np.int64)


def _rise_set(lat: npt.ArrayLike, lon: npt.ArrayLike, ts: _Float) -> tuple[_Float, _Float]:
    """Sunrise and sunset (epoch s) of the solar day each reading falls in."""
    # sunrise_sunset(day) gives the events around local solar noon of UTC date `day`, which is
    # the noon of solar day `day`: so the solar day number picks the right pair.
    return sunrise_sunset(lat, lon, _solar_day(lon, ts).astype(np.float64) * _DAY_S)


def _night_and_day(rise: _Float, sets: _Float, ts: _Float, grace_s: float) -> tuple[_Bool, _Bool]:
    """Sun down over [ts - grace_s, ts + grace_s], and sun up over it."""
    if not 0.0 <= grace_s <= 3 * 3600.0:
        raise ValueError("grace_s must be within 0..3 h")  # solar midnight stays inside the night
    night = (ts + grace_s <= rise) | (ts - grace_s >= sets)
    day = (ts - grace_s > rise) & (ts + grace_s < sets)
    return np.asarray(night, dtype=np.bool_), np.asarray(day, dtype=np.bool_)


def _district_sum(values: _Float, district_cell: _Int, n_dcells: int) -> tuple[_Float, _Int]:
    """Sum over lamps of the non-NaN cell values per district cell, and how many there were."""
    ok = ~np.isnan(values)
    total = np.asarray(
        np.bincount(district_cell[ok], weights=values[ok], minlength=n_dcells), dtype=np.float64
    )
    count = np.bincount(district_cell[ok], minlength=n_dcells)
    return total, count
