"""Air-quality stations: traffic rush hours, evening burning, pollution episodes, weather."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from pantau.registry import Device
from processors.catalog import KindSpec, kind_spec
from simulators.model import WIB_OFFSET_S, day_index, local_hour
from simulators.purbalingga import District

__all__ = ["AirQualityModel"]

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]

_TAG: Final = 0xA1
_EPISODE_CHANCE: Final = 0.08  # per station and day: a multi-hour pollution episode
_LAPSE_C_PER_M: Final = 0.0065


def _bump(hour: _Float, centre: float, width: float) -> _Float:
    result: _Float = np.exp(-0.5 * ((hour - centre) / width) ** 2)
    return result


class AirQualityModel:
    """Concentrations in ug/m3 (as ISPU uses), temperature and humidity of a Central Java town."""

    def __init__(
        self, devices: Sequence[Device], seed: int, districts: Mapping[str, District]
    ) -> None:
        """Per-station character (urban intensity, altitude, sensor offsets) from the seed."""
        self._spec = kind_spec("air_quality")
        self._seed = seed
        self._n = len(devices)
        found = [districts.get(d.district) for d in devices]
        self._urban = np.array([d.urban if d else 1.0 for d in found])
        rng = np.random.default_rng([seed, _TAG])
        self._urban *= rng.lognormal(0.0, 0.1, self._n)  # streets differ within a district
        altitude = np.array([d.altitude_m if d else 100.0 for d in found])
        self._temp_base = 27.5 - _LAPSE_C_PER_M * altitude + rng.normal(0.0, 0.4, self._n)
        self._pm10_ratio = rng.uniform(1.4, 1.9, self._n)

    @property
    def spec(self) -> KindSpec:
        """The air_quality kind."""
        return self._spec

    @property
    def decimals(self) -> tuple[int, ...]:
        """pm25, pm10, so2, no2, o3, co, hc, temperature, humidity."""
        return (1, 1, 1, 1, 1, 0, 1, 1, 1)

    def _daily(self, days: _Int) -> dict[str, _Float]:
        """Per-day, per-station draws (episodes, weather), independent of how time is chunked."""
        span = np.arange(days.min() - 1, days.max() + 2)
        names = ("episode", "ep_start", "ep_len", "ep_gain", "weather", "anomaly")
        out = {name: np.empty((span.size, self._n)) for name in names}
        for row, day in enumerate(span):
            rng = np.random.default_rng([self._seed, _TAG, int(day)])
            out["episode"][row] = rng.random(self._n) < _EPISODE_CHANCE
            out["ep_start"][row] = rng.uniform(0.0, 24.0, self._n)
            out["ep_len"][row] = rng.uniform(3.0, 12.0, self._n)
            out["ep_gain"][row] = rng.uniform(1.8, 4.0, self._n)
            out["weather"][row] = rng.lognormal(0.0, 0.25, self._n)
            out["anomaly"][row] = rng.normal(0.0, 1.0, self._n)
        out["first_day"] = np.array([float(span[0])])
        return out

    def sample(self, device: _Int, ts: _Float, rng: np.random.Generator) -> _Float:
        """One row per reading: pm25, pm10, so2, no2, o3, co, hc, temperature, humidity."""
        n = ts.size
        values = np.full((n, len(self._spec.fields)), np.nan)
        if n == 0:
            return values
        hour = local_hour(ts)
        day = day_index(ts)
        daily = self._daily(day)
        row = day - int(daily["first_day"][0])
        weekend = ((day + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        traffic = (_bump(hour, 7.25, 1.1) + 0.9 * _bump(hour, 17.5, 1.4)) * np.where(
            weekend, 0.75, 1.0
        ) + 0.25 * _bump(hour, 13.0, 4.0)
        burning = _bump(hour, 19.5, 1.3)  # open burning of garden and household waste
        mixing = 1.0 + 0.35 * np.cos(2 * np.pi * (hour - 3.0) / 24.0)  # shallow night layer
        photo = np.clip(np.sin(np.pi * (hour - 7.0) / 11.0), 0.0, 1.0) ** 1.5

        # Episodes may start late in the evening and run past midnight: look at yesterday too.
        episode = np.ones(n)
        for back in (0, 1):
            r = row - back
            start = (day - back) * 86400.0 - WIB_OFFSET_S + daily["ep_start"][r, device] * 3600
            x = (ts - start) / (daily["ep_len"][r, device] * 3600.0)
            active = (daily["episode"][r, device] > 0) & (x >= 0.0) & (x <= 1.0)
            gain = 1.0 + (daily["ep_gain"][r, device] - 1.0) * np.sin(np.pi * np.clip(x, 0, 1))
            episode = np.maximum(episode, np.where(active, gain, 1.0))
        # Day-to-day weather, interpolated so midnight shows no step.
        frac = np.mod(ts + WIB_OFFSET_S, 86400.0) / 86400.0
        weather = (1 - frac) * daily["weather"][row, device] + frac * daily["weather"][
            row + 1, device
        ]
        anomaly = daily["anomaly"][row, device]

        urban = self._urban[device]

        def noise(sigma: float) -> _Float:
            result: _Float = rng.lognormal(0.0, sigma, n)
            return result

        pm25 = urban * (6 + 22 * traffic + 28 * burning) * mixing * episode * weather * noise(0.12)
        values[:, 0] = pm25
        values[:, 1] = pm25 * self._pm10_ratio[device] + urban * 8 * traffic * noise(0.2)
        values[:, 2] = (4 + 6 * urban * traffic) * weather * noise(0.2)
        values[:, 3] = urban * (6 + 30 * traffic) * mixing * weather * noise(0.15)
        values[:, 4] = (15 + 90 * photo) * (1 - 0.12 * traffic) / np.sqrt(weather) * noise(0.1)
        values[:, 5] = (
            urban
            * (350 + 1100 * traffic + 1400 * burning)
            * mixing
            * episode**0.6
            * weather
            * noise(0.12)
        )
        values[:, 6] = urban * (50 + 140 * traffic + 120 * burning) * mixing * weather * noise(0.15)
        diurnal = np.sin(2 * np.pi * (hour - 8.5) / 24.0)  # warmest mid-afternoon
        values[:, 7] = self._temp_base[device] + 4.5 * diurnal + anomaly + rng.normal(0, 0.2, n)
        values[:, 8] = np.clip(78 - 14 * diurnal + 3 * anomaly + rng.normal(0, 1.5, n), 30, 100)
        return values

    def settle(self, device: _Int, ts: _Float, values: _Float) -> None:
        """Nothing derived."""
