"""Indicators summed up per district and for the regency: ISPU, flood status, streetlights."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from api.livestate import IndicatorEntry
from pantau.derived import DISTRICT_DEVICE, finite_number

__all__ = ["FLOOD_STATUSES", "area_metrics", "area_summary"]

FLOOD_STATUSES: Final = ("Normal", "Waspada", "Siaga", "Awas")


def area_summary(entries: Iterable[IndicatorEntry]) -> dict[str, Any]:
    """What the operations centre reads for one area: air, flood and streetlight summaries."""
    air: list[IndicatorEntry] = []
    water: list[IndicatorEntry] = []
    lights: list[IndicatorEntry] = []
    for e in entries:
        if e.kind == "air_quality" and e.device_id != DISTRICT_DEVICE:
            if finite_number(e.values.get("ispu")) is not None:
                air.append(e)
        elif e.kind == "water_level" and e.device_id != DISTRICT_DEVICE:
            if e.values.get("flood_status") in FLOOD_STATUSES:
                water.append(e)
        elif e.kind == "streetlight" and e.device_id == DISTRICT_DEVICE:
            lights.append(e)
    return {
        "air_quality": _air(air),
        "water_level": _water(water),
        "streetlight": _lights(lights),
    }


def _air(entries: list[IndicatorEntry]) -> dict[str, Any] | None:
    if not entries:
        return None
    values = [float(e.values["ispu"]) for e in entries]
    worst = entries[max(range(len(values)), key=values.__getitem__)]
    return {
        "stations": len(entries),
        "ispu_max": max(values),
        "ispu_mean": sum(values) / len(values),
        "category": _label(worst.values.get("ispu_category")),
        "colour": _label(worst.values.get("ispu_colour")),
        "critical": _label(worst.values.get("ispu_critical")),
        "ts": max(e.ts for e in entries),
    }


def _label(value: Any) -> str | None:
    """A label as the answer declares it: a string, or None (never a number or anything else)."""
    return value if isinstance(value, str) else None


def _water(entries: list[IndicatorEntry]) -> dict[str, Any] | None:
    if not entries:
        return None
    counts = dict.fromkeys(FLOOD_STATUSES, 0)
    for e in entries:
        counts[e.values["flood_status"]] += 1
    worst = max((s for s in FLOOD_STATUSES if counts[s]), key=FLOOD_STATUSES.index)
    return {
        "gauges": len(entries),
        "worst_status": worst,
        "worst_level": FLOOD_STATUSES.index(worst),
        "counts": counts,
        "share_normal": counts["Normal"] / len(entries),
        "ts": max(e.ts for e in entries),
    }


def _lights(entries: list[IndicatorEntry]) -> dict[str, Any] | None:
    if not entries:
        return None

    def total(name: str) -> float:
        return sum(v for e in entries if (v := finite_number(e.values.get(name))) is not None)

    due = total("lamps_due")
    working = sum(
        a * d
        for e in entries
        if (a := finite_number(e.values.get("availability"))) is not None
        and (d := finite_number(e.values.get("lamps_due"))) is not None
    )
    lamps = total("lamps_reporting")
    burn = total("day_burn_h_today")
    return {
        "lamps": int(lamps),
        "lamps_due": int(due),
        "availability": working / due if due else None,
        "energy_today_wh": total("energy_today_wh"),
        "day_burn_h_today": burn,
        "day_burn_h_per_lamp": burn / lamps if lamps else None,
        "ts": max(e.ts for e in entries),
    }


def area_metrics(summary: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The numbers a scoring model may use, as name -> (value, observation time)."""
    out: dict[str, tuple[float, float]] = {}
    for kind, part in summary.items():
        if not part:
            continue
        for name, value in part.items():
            number = finite_number(value)
            if number is not None and name != "ts":
                out[f"{kind}.{name}"] = (number, float(part["ts"]))
    return out
