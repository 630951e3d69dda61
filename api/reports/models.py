"""Response bodies of the report routes, as `/openapi.json` describes them (docs/reports.md).

Like api/models.py, these document the bodies the routes build; answers are not validated
against them on the way out.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AreaReport",
    "Completeness",
    "DayFigures",
    "DeviceCompleteness",
    "FloodHours",
    "IspuDays",
    "Report",
    "ScoreHistory",
    "ScorePoint",
    "StreetlightFigures",
]

_Share = Annotated[float, Field(ge=0, le=1)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class IspuDays(_Body):
    """Days per ISPU category (P.14/2020), and days without any stored ISPU."""

    baik: int = Field(alias="Baik")
    sedang: int = Field(alias="Sedang")
    tidak_sehat: int = Field(alias="Tidak Sehat")
    sangat_tidak_sehat: int = Field(alias="Sangat Tidak Sehat")
    berbahaya: int = Field(alias="Berbahaya")
    no_data: int = Field(alias="Tidak ada data")


class FloodHours(_Body):
    """Gauge-hours per flood level (the hour's highest level), and gauge-hours without one."""

    normal: int = Field(alias="Normal")
    waspada: int = Field(alias="Waspada")
    siaga: int = Field(alias="Siaga")
    awas: int = Field(alias="Awas")
    no_data: int = Field(alias="Tidak ada data")


class StreetlightFigures(_Body):
    """Share of should-be-on lamp readings where the lamp worked; energy; registered lamps."""

    night_availability: _Share | None
    energy_kwh: float
    lamps: int


class Completeness(_Body):
    """Readings received of those expected from the registry intervals."""

    expected: int
    received: int
    share: _Share | None


class DeviceCompleteness(_Body):
    """One device's readings received of those expected (null without an interval)."""

    device_id: str
    kind: str
    expected: int | None
    received: int
    share: _Share | None


class DayFigures(_Body):
    """One local day's figures."""

    date: str
    ispu_max: float | None
    ispu_category: str | None
    flood_worst: Literal["Normal", "Waspada", "Siaga", "Awas"] | None
    flood_hours_siaga_or_above: int
    night_availability: _Share | None
    energy_kwh: float
    completeness: _Share | None


class AreaReport(_Body):
    """The figures of the regency or one district."""

    area: str
    district: str
    ispu_days: IspuDays
    flood_hours: FloodHours
    streetlight: StreetlightFigures
    completeness: Completeness
    devices: list[DeviceCompleteness]
    days: list[DayFigures]


class Report(_Body):
    """A monthly or daily report (format=csv gives the same figures as text/csv)."""

    period: Literal["monthly", "daily"]
    month: str | None
    date: str | None
    start: int
    end: int
    time_zone: str
    areas: list[AreaReport]


class ScorePoint(_Body):
    """One stored hour: the six dimension scores by label (null: not measured), the metrics."""

    ts: int
    dimensions: dict[str, float | None]
    metrics: dict[str, float]


class ScoreHistory(_Body):
    """An area's hourly stored scores, oldest first, and where they were read from."""

    area: str
    source: str
    points: list[ScorePoint]
