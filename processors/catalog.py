"""The sensor catalog: the fields, units and physical valid ranges of each device kind."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["CATALOG", "KINDS", "FieldSpec", "KindSpec", "kind_spec"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One measured field: its unit and the range a working sensor can physically report."""

    name: str
    unit: str
    low: float
    high: float
    description: str
    binary: bool = False  # only 0 or 1 is valid (JSON true/false are accepted too)


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
        FieldSpec("pm25", "ug/m3", 0.0, 2000.0, "PM2.5 mass concentration"),
        FieldSpec("pm10", "ug/m3", 0.0, 3000.0, "PM10 mass concentration"),
        FieldSpec("so2", "ug/m3", 0.0, 10000.0, "sulphur dioxide"),
        FieldSpec("no2", "ug/m3", 0.0, 10000.0, "nitrogen dioxide"),
        FieldSpec("o3", "ug/m3", 0.0, 5000.0, "ozone"),
        FieldSpec("co", "ug/m3", 0.0, 150000.0, "carbon monoxide (ug/m3, as ISPU uses)"),
        FieldSpec("hc", "ug/m3", 0.0, 10000.0, "non-methane hydrocarbons"),
        FieldSpec("temperature", "C", -40.0, 70.0, "air temperature"),
        FieldSpec("humidity", "%", 0.0, 100.0, "relative humidity"),
    ),
)
_WATER = KindSpec(
    "water_level",
    (
        FieldSpec("level_cm", "cm", -1000.0, 10000.0, "water level above the gauge datum"),
        FieldSpec("rain_mm", "mm", 0.0, 500.0, "rain since the previous reading"),
        FieldSpec("battery_v", "V", 0.0, 30.0, "logger battery voltage"),
    ),
)
_LIGHT = KindSpec(
    "streetlight",
    (
        FieldSpec("lamp_on", "0/1", 0.0, 1.0, "lamp switched on", binary=True),
        FieldSpec("dim_pct", "%", 0.0, 100.0, "dimming level (100 = full output)"),
        FieldSpec("power_w", "W", 0.0, 2000.0, "active power drawn"),
        FieldSpec("voltage_v", "V", 0.0, 300.0, "supply voltage"),
        FieldSpec("current_a", "A", 0.0, 20.0, "supply current"),
        FieldSpec("energy_wh", "Wh", 0.0, 1e12, "cumulative energy counter"),
        FieldSpec("lux", "lx", 0.0, 200000.0, "ambient illuminance at the photocell"),
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
