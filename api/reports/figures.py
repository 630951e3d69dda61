"""Report figures from aggregated rows: ISPU days, flood hours, night availability, completeness.

Pure functions over plain data, so the definitions in docs/reports.md are testable alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from api.reports.period import Period
from processors.indicators.flood import FLOOD_LEVELS, FloodThresholds, flood_level
from processors.indicators.ispu import ISPU_SCALE
from processors.indicators.streetlight import LampFleet, local_day, streetlight_daily

__all__ = [
    "NO_DATA",
    "LampReadings",
    "ReportDevice",
    "ReportInputs",
    "build_areas",
]

NO_DATA: Final = "Tidak ada data"
_DAY_S: Final = 86400


@dataclass(frozen=True, slots=True)
class ReportDevice:
    """What a report needs to know of a device (from the registry, or the live state)."""

    device_id: str
    kind: str
    city: str
    district: str
    lat: float | None = None
    lon: float | None = None
    interval_s: float | None = None
    waspada_cm: float | None = None
    siaga_cm: float | None = None
    awas_cm: float | None = None
    rated_w: float | None = None


@dataclass(frozen=True, slots=True)
class LampReadings:
    """One lamp's readings in the period, in time order (NaN where a field is missing)."""

    ts: npt.NDArray[np.float64]
    lamp_on: npt.NDArray[np.float64]
    dim_pct: npt.NDArray[np.float64]
    power_w: npt.NDArray[np.float64]
    energy_wh: npt.NDArray[np.float64]


@dataclass(slots=True)
class ReportInputs:
    """The aggregated rows a report is computed from, keyed by device id."""

    ispu: dict[str, dict[int, float]] = field(default_factory=dict)  # day start s -> max ISPU
    level: dict[str, dict[int, float]] = field(default_factory=dict)  # hour start s -> max cm
    lamps: dict[str, LampReadings] = field(default_factory=dict)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)  # day start s -> readings


def _ispu_category(value: float) -> str:
    return ISPU_SCALE.names[int(ISPU_SCALE.level(np.array([value]))[0])]


@dataclass(slots=True)
class _DeviceFigures:
    """Per device, what the areas sum up."""

    day_ispu: dict[str, list[float | None]] = field(default_factory=dict)
    hour_status: dict[str, npt.NDArray[np.int8]] = field(default_factory=dict)  # -1 no data
    lamp_work: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)  # per day
    lamp_night: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    lamp_energy: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)  # Wh per day
    day_received: dict[str, list[int]] = field(default_factory=dict)


def _gauge_status(
    device: ReportDevice, period: Period, levels: Mapping[int, float]
) -> npt.NDArray[np.int8]:
    """Alert level per hour slot from the hour's highest level; -1 for an hour without one."""
    hours = np.full(period.hours, np.nan)
    for at, value in levels.items():
        slot = (at - period.start) // 3600
        if 0 <= slot < period.hours:
            hours[slot] = np.fmax(hours[slot], value)  # fmax: NaN (no reading yet) loses
    limits = [
        np.nan if v is None else v for v in (device.waspada_cm, device.siaga_cm, device.awas_cm)
    ]
    thresholds = FloodThresholds(*(np.array([x]) for x in limits))
    return flood_level(hours, thresholds)


def _lamp_figures(
    lamps: Sequence[ReportDevice], inputs: ReportInputs, period: Period, out: _DeviceFigures
) -> None:
    """Night readings, working ones and energy per lamp and day (the collector's definitions)."""
    n_days = len(period.days)
    rows: list[int] = []
    arrays: list[LampReadings] = []
    for row, lamp in enumerate(lamps):
        out.lamp_work[lamp.device_id] = np.zeros(n_days)
        out.lamp_night[lamp.device_id] = np.zeros(n_days)
        out.lamp_energy[lamp.device_id] = np.zeros(n_days)
        readings = inputs.lamps.get(lamp.device_id)
        if readings is not None and readings.ts.size:
            rows.append(row)
            arrays.append(readings)
    if not arrays:
        return
    # A lamp without a place or rating cannot be judged working: placeholders stand in and its
    # night readings are not counted below (its energy still is).
    fleet = LampFleet(
        lat=np.array([d.lat or 0.0 for d in lamps]),
        lon=np.array([d.lon or 0.0 for d in lamps]),
        rated_w=np.array([d.rated_w or 1.0 for d in lamps]),
        district=np.zeros(len(lamps), dtype=np.intp),
        n_districts=1,
    )
    daily = streetlight_daily(
        fleet,
        np.concatenate(
            [np.full(a.ts.size, r, dtype=np.intp) for r, a in zip(rows, arrays, strict=True)]
        ),
        np.concatenate([a.ts for a in arrays]),
        np.concatenate([a.lamp_on for a in arrays]),
        np.concatenate([a.dim_pct for a in arrays]),
        np.concatenate([a.power_w for a in arrays]),
        np.concatenate([a.energy_wh for a in arrays]),
        utc_offset_s=period.utc_offset_s,
    )
    first = int(local_day(np.array([period.start]), period.utc_offset_s)[0])
    for j, day_number in enumerate(daily.days):
        slot = int(day_number) - first
        if not 0 <= slot < n_days:
            continue
        for row, lamp in enumerate(lamps):
            judged = lamp.rated_w is not None and lamp.lat is not None and lamp.lon is not None
            night = float(daily.night_readings[row, j])
            if judged and night:
                avail = float(daily.availability[row, j])
                out.lamp_night[lamp.device_id][slot] = night
                out.lamp_work[lamp.device_id][slot] = round(avail * night)
            energy = float(daily.energy_wh[row, j])
            if not np.isnan(energy):
                out.lamp_energy[lamp.device_id][slot] = energy


def _device_figures(
    devices: Sequence[ReportDevice], inputs: ReportInputs, period: Period
) -> _DeviceFigures:
    out = _DeviceFigures()
    for d in devices:
        if d.kind == "air_quality":
            by_day = inputs.ispu.get(d.device_id, {})
            out.day_ispu[d.device_id] = [by_day.get(day.start) for day in period.days]
        elif d.kind == "water_level" and any(
            v is not None for v in (d.waspada_cm, d.siaga_cm, d.awas_cm)
        ):
            out.hour_status[d.device_id] = _gauge_status(
                d, period, inputs.level.get(d.device_id, {})
            )
        counts = inputs.counts.get(d.device_id, {})
        out.day_received[d.device_id] = [int(counts.get(day.start, 0)) for day in period.days]
    _lamp_figures([d for d in devices if d.kind == "streetlight"], inputs, period, out)
    return out


def _share(received: float, expected: float) -> float | None:
    return min(1.0, received / expected) if expected > 0 else None


def _expected(device: ReportDevice, seconds: float) -> int | None:
    if not device.interval_s:
        return None
    return round(seconds / device.interval_s)


def _area(
    area: str, district: str, devices: Sequence[ReportDevice], figs: _DeviceFigures, period: Period
) -> dict[str, Any]:
    ids = [d.device_id for d in devices]
    stations = [i for i in ids if i in figs.day_ispu]
    gauges = [i for i in ids if i in figs.hour_status]
    lamps = [d.device_id for d in devices if d.kind == "streetlight"]
    ispu_days = dict.fromkeys((*ISPU_SCALE.names, NO_DATA), 0)
    flood_hours = dict.fromkeys((*FLOOD_LEVELS, NO_DATA), 0)
    days: list[dict[str, Any]] = []
    for j, day in enumerate(period.days):
        values = [v for i in stations if (v := figs.day_ispu[i][j]) is not None]
        ispu_max = max(values) if values else None
        category = None if ispu_max is None else _ispu_category(ispu_max)
        ispu_days[category or NO_DATA] += 1
        lo, hi = (day.start - period.start) // 3600, -(-(day.end - period.start) // 3600)
        worst = -1
        siaga_or_above = 0
        for g in gauges:
            hours = figs.hour_status[g][lo:hi]
            worst = max(worst, int(hours.max()) if hours.size else -1)
            siaga_or_above += int(np.count_nonzero(hours >= 2))
        night = sum(float(figs.lamp_night[i][j]) for i in lamps)
        work = sum(float(figs.lamp_work[i][j]) for i in lamps)
        received = sum(figs.day_received[d.device_id][j] for d in devices if d.interval_s)
        expected = sum((day.end - day.start) / d.interval_s for d in devices if d.interval_s)
        days.append(
            {
                "date": day.date,
                "ispu_max": ispu_max,
                "ispu_category": category,
                "flood_worst": FLOOD_LEVELS[worst] if worst >= 0 else None,
                "flood_hours_siaga_or_above": siaga_or_above,
                "night_availability": work / night if night else None,
                "energy_kwh": sum(float(figs.lamp_energy[i][j]) for i in lamps) / 1000.0,
                "completeness": _share(received, expected),
            }
        )
    for g in gauges:
        status = figs.hour_status[g]
        for level, name in enumerate(FLOOD_LEVELS):
            flood_hours[name] += int(np.count_nonzero(status == level))
        flood_hours[NO_DATA] += int(np.count_nonzero(status < 0))
    night = sum(float(figs.lamp_night[i].sum()) for i in lamps)
    work = sum(float(figs.lamp_work[i].sum()) for i in lamps)
    rows: list[dict[str, Any]] = []
    total_expected = total_received = 0
    for d in devices:
        got = sum(figs.day_received[d.device_id])
        due = _expected(d, period.end - period.start)
        rows.append(
            {
                "device_id": d.device_id,
                "kind": d.kind,
                "expected": due,
                "received": got,
                "share": None if due is None else _share(got, due),
            }
        )
        if due is not None:  # devices without an interval stay out of the area's share
            total_expected += due
            total_received += got
    return {
        "area": area,
        "district": district,
        "ispu_days": ispu_days,
        "flood_hours": flood_hours,
        "streetlight": {
            "night_availability": work / night if night else None,
            "energy_kwh": sum(float(figs.lamp_energy[i].sum()) for i in lamps) / 1000.0,
            "lamps": len(lamps),
        },
        "completeness": {
            "expected": total_expected,
            "received": total_received,
            "share": _share(total_received, total_expected),
        },
        "devices": rows,
        "days": days,
    }


def build_areas(
    devices: Iterable[ReportDevice], inputs: ReportInputs, period: Period, district: str | None
) -> list[dict[str, Any]]:
    """The report's areas: the regency and every district, or only `district`."""
    chosen = sorted(
        (d for d in devices if district is None or d.district == district),
        key=lambda d: (d.district, d.kind, d.device_id),
    )
    figs = _device_figures(chosen, inputs, period)
    areas = []
    if district is None:
        areas.append(_area("regency", "", chosen, figs, period))
    for name in sorted({d.district for d in chosen}):
        members = [d for d in chosen if d.district == name]
        areas.append(_area(name, name, members, figs, period))
    return areas
