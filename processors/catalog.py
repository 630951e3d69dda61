"""The sensor catalog: the fields, units and physical valid ranges of each device kind."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CATALOG",
    "KINDS",
    "DeviceFacts",
    "FieldSpec",
    "KindSpec",
    "generic_spec",
    "kind_spec",
]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One measured field: its unit and the range a working sensor can physically report."""

    name: str
    unit: str
    low: float
    high: float
    description: str
    binary: bool = False  # only 0 or 1 is valid (JSON true/false are accepted too)
    varies: bool = False  # a working sensor's value keeps changing: a long frozen run is a fault
    max_rate_per_h: float = float("inf")  # a faster change between readings is implausible
    resolution: float = 0.01  # smallest meaningful step (> 0); floors the spike scale


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A device kind: its InfluxDB measurement and its fields, in a fixed column order."""

    kind: str
    fields: tuple[FieldSpec, ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field names in column order."""
        return tuple(f.name for f in self.fields)

    def lows(self) -> npt.NDArray[np.float64]:
        """Lower valid bound per column."""
        return np.array([f.low for f in self.fields], dtype=np.float64)

    def highs(self) -> npt.NDArray[np.float64]:
        """Upper valid bound per column."""
        return np.array([f.high for f in self.fields], dtype=np.float64)

    def varies_mask(self) -> npt.NDArray[np.bool_]:
        """True for columns whose values keep changing on a working sensor."""
        return np.array([f.varies for f in self.fields], dtype=np.bool_)

    def max_rates_per_h(self) -> npt.NDArray[np.float64]:
        """Largest plausible change per hour per column."""
        return np.array([f.max_rate_per_h for f in self.fields], dtype=np.float64)

    def resolutions(self) -> npt.NDArray[np.float64]:
        """Smallest meaningful step per column."""
        return np.array([f.resolution for f in self.fields], dtype=np.float64)

    def binary_mask(self) -> npt.NDArray[np.bool_]:
        """True for columns that only take 0 or 1."""
        return np.array([f.binary for f in self.fields], dtype=np.bool_)

    def column(self, name: str) -> int:
        """Column index of a field."""
        return self.field_names.index(name)


# Ranges are physical plausibility limits, not alert thresholds: a value outside them cannot come
# from a working sensor (or a unit mix-up, e.g. CO in mg/m3 where ug/m3 is expected at the low end
# is still plausible, which is why the catalog fixes ug/m3 as ISPU does).
_AIR = KindSpec(
    "air_quality",
    (
        FieldSpec(
            "pm25",
            "ug/m3",
            0.0,
            2000.0,
            "PM2.5 mass concentration",
            varies=True,
            max_rate_per_h=1500.0,
            resolution=1.0,
        ),
        FieldSpec(
            "pm10",
            "ug/m3",
            0.0,
            3000.0,
            "PM10 mass concentration",
            varies=True,
            max_rate_per_h=2000.0,
            resolution=1.0,
        ),
        FieldSpec(
            "so2",
            "ug/m3",
            0.0,
            10000.0,
            "sulphur dioxide",
            varies=True,
            max_rate_per_h=3000.0,
            resolution=1.0,
        ),
        FieldSpec(
            "no2",
            "ug/m3",
            0.0,
            10000.0,
            "nitrogen dioxide",
            varies=True,
            max_rate_per_h=3000.0,
            resolution=1.0,
        ),
        FieldSpec(
            "o3", "ug/m3", 0.0, 5000.0, "ozone", varies=True, max_rate_per_h=2000.0, resolution=1.0
        ),
        FieldSpec(
            "co",
            "ug/m3",
            0.0,
            150000.0,
            "carbon monoxide (ug/m3, as ISPU uses)",
            varies=True,
            max_rate_per_h=50000.0,
            resolution=10.0,
        ),
        FieldSpec(
            "hc",
            "ug/m3",
            0.0,
            10000.0,
            "non-methane hydrocarbons",
            varies=True,
            max_rate_per_h=3000.0,
            resolution=1.0,
        ),
        FieldSpec(
            "temperature",
            "C",
            -40.0,
            70.0,
            "air temperature",
            varies=True,
            max_rate_per_h=20.0,
            resolution=0.1,
        ),
        FieldSpec(
            "humidity",
            "%",
            0.0,
            100.0,
            "relative humidity",
            varies=True,
            max_rate_per_h=60.0,
            resolution=0.5,
        ),
    ),
)
_WATER = KindSpec(
    "water_level",
    (
        # Rivers in flood rise tens of cm per hour (Katulampa: ~37 cm/h, domain.md 3.2); a
        # faster jump between readings is a sensor or datum fault, not water.
        FieldSpec(
            "level_cm",
            "cm",
            -1000.0,
            10000.0,
            "water level above the gauge datum",
            varies=True,
            max_rate_per_h=300.0,
            resolution=0.1,
        ),
        FieldSpec("rain_mm", "mm", 0.0, 500.0, "rain since the previous reading"),
        FieldSpec("battery_v", "V", 0.0, 30.0, "logger battery voltage", resolution=0.05),
    ),
)
_LIGHT = KindSpec(
    "streetlight",
    (
        FieldSpec("lamp_on", "0/1", 0.0, 1.0, "lamp switched on", binary=True),
        FieldSpec("dim_pct", "%", 0.0, 100.0, "dimming level (100 = full output)"),
        FieldSpec("power_w", "W", 0.0, 2000.0, "active power drawn", resolution=1.0),
        FieldSpec("voltage_v", "V", 0.0, 300.0, "supply voltage", varies=True, resolution=0.5),
        FieldSpec("current_a", "A", 0.0, 20.0, "supply current", resolution=0.01),
        FieldSpec("energy_wh", "Wh", 0.0, 1e12, "cumulative energy counter"),
        FieldSpec(
            "lux", "lx", 0.0, 200000.0, "ambient illuminance at the photocell", resolution=1.0
        ),
    ),
)

CATALOG: Final = MappingProxyType({k.kind: k for k in (_AIR, _WATER, _LIGHT)})
KINDS: Final = tuple(CATALOG)


def kind_spec(kind: str) -> KindSpec:
    """The spec of a kind; KeyError names the known kinds."""
    try:
        return CATALOG[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}") from None


def generic_spec(names: tuple[str, ...], values: npt.NDArray[np.float64]) -> KindSpec:
    """A catalog entry for columns of no known kind: all vary, no physical limits.

    The resolution (the spike detector's floor) is the smallest non-zero step seen per column.
    """
    fields = []
    for j, name in enumerate(names):
        column = values[:, j]
        steps = np.abs(np.diff(column[~np.isnan(column)]))
        positive = steps[steps > 0]
        resolution = float(positive.min()) if positive.size else 1e-6
        fields.append(
            FieldSpec(
                name, "", -np.inf, np.inf, name, varies=True, resolution=max(resolution, 1e-9)
            )
        )
    return KindSpec("generic", tuple(fields))


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the registry knows of a device (NaN where it knows nothing)."""

    lat: float = float("nan")
    lon: float = float("nan")
    interval_s: float = float("nan")
    rated_w: float = float("nan")
    waspada_cm: float = float("nan")
    siaga_cm: float = float("nan")
    awas_cm: float = float("nan")
    # Position along the device's river from upstream (1: the top gauge); NaN: not ordered.
    peer_order: float = float("nan")
