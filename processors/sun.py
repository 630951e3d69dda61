"""The sun's position at a place and time (NOAA general solar position), vectorised; no I/O.

Accurate to about a minute in sunrise/sunset for the tropics, which is what streetlight
switching needs. Civil day/night uses the standard refraction-corrected horizon of -0.833 deg.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["HORIZON_DEG", "is_daylight", "solar_elevation_deg", "sunrise_sunset"]

HORIZON_DEG: Final = -0.833  # sunrise/sunset: the sun's upper limb on the horizon, refracted

_Float = npt.NDArray[np.float64]
_Array = float | npt.ArrayLike


def _declination_and_eot(ts: _Float) -> tuple[_Float, _Float]:
    """Solar declination (rad) and equation of time (minutes) at epoch seconds."""
    days = ts / 86400.0 + 2440587.5 - 2451545.0  # days since J2000.0
    gamma = 2.0 * np.pi / 365.25 * days  # fractional year, radians (continuous across years)
    eot = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    return decl, eot


def solar_elevation_deg(lat: _Array, lon: _Array, ts: _Array) -> _Float:
    """Elevation of the sun's centre above the horizon, degrees, at epoch seconds (UTC)."""
    lat_r = np.radians(np.asarray(lat, dtype=np.float64))
    lon_d = np.asarray(lon, dtype=np.float64)
    t = np.asarray(ts, dtype=np.float64)
    decl, eot = _declination_and_eot(t)
    minutes_utc = np.mod(t, 86400.0) / 60.0
    true_solar = np.mod(minutes_utc + eot + 4.0 * lon_d, 1440.0)
    hour_angle = np.radians(true_solar / 4.0 - 180.0)
    cos_zenith = np.sin(lat_r) * np.sin(decl) + np.cos(lat_r) * np.cos(decl) * np.cos(hour_angle)
    result: _Float = np.degrees(np.arcsin(np.clip(cos_zenith, -1.0, 1.0)))
    return result


def is_daylight(lat: _Array, lon: _Array, ts: _Array) -> npt.NDArray[np.bool_]:
    """True between sunrise and sunset at the place."""
    result: npt.NDArray[np.bool_] = solar_elevation_deg(lat, lon, ts) > HORIZON_DEG
    return result


def sunrise_sunset(lat: _Array, lon: _Array, day_start_utc: _Array) -> tuple[_Float, _Float]:
    """Sunrise and sunset (epoch seconds) on the UTC day starting at `day_start_utc`.

    In the tropics both events fall on every day; the hour angle is evaluated at local solar
    noon, which is exact to well under a minute.
    """
    lat_r = np.radians(np.asarray(lat, dtype=np.float64))
    lon_d = np.asarray(lon, dtype=np.float64)
    day = np.asarray(day_start_utc, dtype=np.float64)
    noon_guess = day + (720.0 - 4.0 * lon_d) * 60.0
    decl, eot = _declination_and_eot(noon_guess)
    zenith = np.radians(90.0 - HORIZON_DEG)
    cos_ha = (np.cos(zenith) - np.sin(lat_r) * np.sin(decl)) / (np.cos(lat_r) * np.cos(decl))
    half_day_min = np.degrees(np.arccos(np.clip(cos_ha, -1.0, 1.0))) * 4.0
    noon_min = 720.0 - 4.0 * lon_d - eot
    sunrise: _Float = day + (noon_min - half_day_min) * 60.0
    sunset: _Float = day + (noon_min + half_day_min) * 60.0
    return sunrise, sunset
