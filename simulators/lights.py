"""Streetlights: switched by the sun at each lamp, dimmed late at night, metered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from pantau.registry import Device
from processors.catalog import KindSpec, kind_spec
from processors.sun import is_daylight, solar_elevation_deg
from simulators.model import local_hour

__all__ = ["DimSchedule", "StreetlightModel"]

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]

_TAG: Final = 0xC3
_STANDBY_W: Final = 0.4  # the lamp controller's own draw while the lamp is off
_LUX_FULL_SUN: Final = 110_000.0


@dataclass(frozen=True, slots=True)
class DimSchedule:
    """Output while the lamp is on: full power, dimmed between `from_hour` and `to_hour` WIB."""

    from_hour: float = 23.0
    to_hour: float = 4.0
    dimmed_pct: float = 50.0

    def percent(self, hour: _Float) -> _Float:
        """Dimming level (100 = full) at these WIB hours, ignoring day and night."""
        if self.from_hour > self.to_hour:  # the dimmed span crosses midnight
            dimmed = (hour >= self.from_hour) | (hour < self.to_hour)
        else:
            dimmed = (hour >= self.from_hour) & (hour < self.to_hour)
        result: _Float = np.where(dimmed, self.dimmed_pct, 100.0)
        return result


class StreetlightModel:
    """lamp_on, dim_pct, power_w, voltage_v, current_a, energy_wh (cumulative) and lux."""

    def __init__(
        self, devices: Sequence[Device], seed: int, dimming: DimSchedule | None = None
    ) -> None:
        """Lamp positions and ratings from the registry; meter counters start from the seed."""
        self._spec = kind_spec("streetlight")
        self._dimming = dimming or DimSchedule()
        n = len(devices)
        self.lat = np.array([d.lat for d in devices])
        self.lon = np.array([d.lon for d in devices])
        self.rated_w = np.array([d.rated_w or 0.0 for d in devices])
        rng = np.random.default_rng([seed, _TAG])
        self._volt_offset = rng.normal(0.0, 1.0, n)
        # Meter state, carried from one chunk of readings to the next.
        self._energy = rng.uniform(1e4, 5e5, n)
        self._last_ts = np.full(n, np.nan)
        self._last_power = np.full(n, np.nan)

    @property
    def spec(self) -> KindSpec:
        """The streetlight kind."""
        return self._spec

    @property
    def decimals(self) -> tuple[int, ...]:
        """lamp_on, dim_pct, power_w, voltage_v, current_a, energy_wh, lux."""
        return (0, 0, 1, 1, 3, 1, 1)

    def sample(self, device: _Int, ts: _Float, rng: np.random.Generator) -> _Float:
        """Lamp state and meter readings before device faults; current and energy come in settle."""
        n = ts.size
        values = np.full((n, len(self._spec.fields)), np.nan)
        if n == 0:
            return values
        lat, lon = self.lat[device], self.lon[device]
        on = ~is_daylight(lat, lon, ts)
        hour = local_hour(ts)
        dim = np.where(on, self._dimming.percent(hour), 0.0)
        rated = self.rated_w[device]
        power = np.where(
            on,
            rated * dim / 100.0 * (1.0 + rng.normal(0.0, 0.015, n)),
            _STANDBY_W + rng.normal(0.0, 0.03, n),
        )
        evening_load = np.exp(-0.5 * ((hour - 19.5) / 2.0) ** 2)  # the grid sags at peak demand
        voltage = np.clip(
            226.0 + self._volt_offset[device] - 3.0 * evening_load + rng.normal(0.0, 0.6, n),
            220.0,
            230.0,
        )
        elevation = solar_elevation_deg(lat, lon, ts)
        clouds = rng.uniform(0.35, 1.0, n)
        direct = _LUX_FULL_SUN * np.sin(np.radians(np.maximum(elevation, 0.0))) * clouds
        dusk = np.minimum(elevation, 0.0)  # direct light takes over once the sun is up
        twilight = np.where(dusk > -8.0, 10.0 ** (2.5 + 0.3 * dusk), 0.0) * clouds
        night = 1.0 + rng.uniform(0.0, 2.0, n)  # moonlight and neighbouring light
        values[:, 0] = on
        values[:, 1] = dim
        values[:, 2] = np.maximum(power, 0.0)
        values[:, 3] = voltage
        values[:, 6] = np.maximum.reduce([direct, twilight, night])
        return values

    def settle(self, device: _Int, ts: _Float, values: _Float) -> None:
        """current_a from power and voltage; energy_wh integrates power between readings."""
        values[:, 4] = values[:, 2] / values[:, 3]
        if ts.size == 0:
            return
        order = np.lexsort((ts, device))  # each lamp's readings together, in time order
        d, t, p = device[order], ts[order], values[order, 2]
        first = np.r_[True, d[1:] != d[:-1]]
        last = np.r_[d[1:] != d[:-1], True]
        prev_t = np.r_[np.nan, t[:-1]]
        prev_p = np.r_[np.nan, p[:-1]]
        prev_t[first] = self._last_ts[d[first]]
        prev_p[first] = self._last_power[d[first]]
        # Trapezoid between readings; the very first reading of a lamp adds nothing.
        step = np.where(np.isnan(prev_t), 0.0, (p + prev_p) / 2.0 * (t - prev_t) / 3600.0)
        running = np.cumsum(step)
        group = np.cumsum(first) - 1
        within = running - (running[first] - step[first])[group]
        energy = self._energy[d] + within
        values[order, 5] = energy
        self._energy[d[last]] = energy[last]
        self._last_ts[d[last]] = t[last]
        self._last_power[d[last]] = p[last]
