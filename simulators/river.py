"""River gauges: rain events on each river, flood waves travelling downstream, logger batteries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from pantau.registry import Device
from processors.catalog import KindSpec, kind_spec
from simulators.model import WIB_OFFSET_S, day_index, local_hour

__all__ = ["RainEvents", "RiverModel"]

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]

_TAG: Final = 0xB2
# Rain events per river and day by month (Central Java: wet November-April, dry July-August).
_EVENTS_PER_DAY: Final = (0.9, 0.85, 0.8, 0.6, 0.35, 0.2, 0.12, 0.1, 0.2, 0.45, 0.7, 0.9)
_MEAN_DEPTH_MM: Final = 18.0
# Rain of this depth in one event lifts a gauge from its base level to Waspada: bigger events
# (a few percent of them, more when they follow each other) cross Waspada, rare ones Siaga.
_WASPADA_DEPTH_MM: Final = 40.0
_WAVE_KMH: Final = 5.4  # flood-wave celerity, ~1.5 m/s
_SINUOSITY: Final = 1.3
_KM_PER_DEG: Final = 111.0
_LOOKBACK_DAYS: Final = 2  # a wave has receded to nothing after two days
_WEST_FLOWING: Final = frozenset({"serayu"})  # the others run south off Gunung Slamet


@dataclass(frozen=True, slots=True)
class RainEvents:
    """Rain events of one river: start, end (epoch s) and intensity (mm/h)."""

    start: _Float
    end: _Float
    intensity: _Float

    @property
    def depth_mm(self) -> _Float:
        """Total rain of each event."""
        result: _Float = self.intensity * (self.end - self.start) / 3600.0
        return result


def _month(day: int) -> int:
    return int(np.datetime64(day, "D").astype("datetime64[M]").astype(np.int64) % 12)


class RiverModel:
    """level_cm relative to each gauge's thresholds, rain_mm since the last reading, battery_v."""

    def __init__(self, devices: Sequence[Device], seed: int) -> None:
        """Group gauges by river and work out each gauge's travel time from the river's top."""
        self._spec = kind_spec("water_level")
        self._seed = seed
        n = len(devices)
        rivers = [(d.river or d.device_id).lower() for d in devices]
        self._rivers = sorted(set(rivers))
        self._river = np.array([self._rivers.index(r) for r in rivers], dtype=np.int64)
        self._interval = np.array([d.interval_s for d in devices])
        rng = np.random.default_rng([seed, _TAG])
        waspada = np.array([d.waspada_cm or 100.0 for d in devices])
        self._base = waspada * rng.uniform(0.3, 0.4, n)
        self._gain = (waspada - self._base) / _WASPADA_DEPTH_MM * rng.lognormal(0.0, 0.15, n)
        lat = np.array([d.lat for d in devices])
        lon = np.array([d.lon for d in devices])
        self._lag_s = np.zeros(n)
        for r, name in enumerate(self._rivers):
            members = np.flatnonzero(self._river == r)
            along = (lon if name in _WEST_FLOWING else lat)[members]
            km = (along.max() - along) * _KM_PER_DEG * _SINUOSITY
            self._lag_s[members] = km / _WAVE_KMH * 3600.0
        self._peak_s = (2.0 + 0.25 * self._lag_s / 3600.0) * 3600.0  # waves flatten downstream
        self._rain_factor = rng.uniform(0.6, 1.3, n)  # local rain differs along a river
        self._battery = rng.normal(12.7, 0.15, n)
        self._battery_phase = rng.uniform(0.0, 2 * np.pi, n)

    @property
    def spec(self) -> KindSpec:
        """The water_level kind."""
        return self._spec

    @property
    def decimals(self) -> tuple[int, ...]:
        """level_cm, rain_mm, battery_v."""
        return (1, 1, 2)

    @property
    def rivers(self) -> tuple[str, ...]:
        """River names (lowercase), in the order used by `events`."""
        return tuple(self._rivers)

    def lag_s(self, device: int) -> float:
        """Travel time of a flood wave from the river's top gauge to this gauge."""
        return float(self._lag_s[device])

    def events(self, river: int, first_day: int, last_day: int) -> RainEvents:
        """Rain events on a river starting on WIB days first_day..last_day (fixed by the seed)."""
        starts: list[_Float] = []
        ends: list[_Float] = []
        rates: list[_Float] = []
        for day in range(first_day, last_day + 1):
            rng = np.random.default_rng([self._seed, _TAG, day, river])
            count = rng.poisson(_EVENTS_PER_DAY[_month(day)])
            # Convective afternoon storms, mostly.
            hour = np.mod(rng.normal(14.5, 3.0, count), 24.0)
            hours = np.clip(rng.lognormal(np.log(1.5), 0.5, count), 0.3, 6.0)
            depth = rng.exponential(_MEAN_DEPTH_MM, count)
            start = day * 86400.0 - WIB_OFFSET_S + hour * 3600.0
            starts.append(start)
            ends.append(start + hours * 3600.0)
            rates.append(depth / hours)
        return RainEvents(np.concatenate(starts), np.concatenate(ends), np.concatenate(rates))

    def sample(self, device: _Int, ts: _Float, rng: np.random.Generator) -> _Float:
        """One row per reading: level_cm, rain_mm, battery_v."""
        n = ts.size
        values = np.full((n, len(self._spec.fields)), np.nan)
        if n == 0:
            return values
        days = day_index(ts)
        first, last = int(days.min()) - _LOOKBACK_DAYS, int(days.max())
        level = self._base[device].copy()
        rain = np.zeros(n)
        for r in np.unique(self._river[device]):
            on_river = np.flatnonzero(self._river[device] == r)
            dev = device[on_river]
            t = ts[on_river]
            ev = self.events(int(r), first, last)
            # Each event's wave: rise to a peak `peak_s` after the rain's middle, then recede.
            mid = (ev.start + ev.end) / 2.0
            x = (t[:, None] - mid[None, :] - self._lag_s[dev][:, None]) / self._peak_s[dev][:, None]
            x = np.maximum(x, 0.0)
            wave = x**2 * np.exp(2.0 * (1.0 - x))
            level[on_river] += self._gain[dev] * (wave @ ev.depth_mm)
            since = t - self._interval[dev]
            overlap = np.clip(
                np.minimum(t[:, None], ev.end[None, :]) - np.maximum(since[:, None], ev.start),
                0.0,
                None,
            )
            rain[on_river] = overlap @ ev.intensity / 3600.0 * self._rain_factor[dev]
        values[:, 0] = level + rng.normal(0.0, 0.4, n)
        values[:, 1] = rain
        hour = local_hour(ts)
        solar = np.clip(np.sin(np.pi * (hour - 6.0) / 12.0), 0.0, None)  # charging by day
        slow = 0.2 * np.sin(2 * np.pi * ts / (9 * 86400.0) + self._battery_phase[device])
        values[:, 2] = self._battery[device] + 0.45 * solar + slow + rng.normal(0.0, 0.01, n)
        return values

    def settle(self, device: _Int, ts: _Float, values: _Float) -> None:
        """Nothing derived."""
