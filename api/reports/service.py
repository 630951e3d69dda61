"""A report: read the aggregated rows from InfluxDB, compute the figures, shape the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from api.livestate import LiveState
from api.reports.figures import LampReadings, ReportDevice, ReportInputs, build_areas
from api.reports.period import Period
from api.reports.queries import (
    Scope,
    counts_query,
    energy_before_query,
    ispu_query,
    lamp_query,
    level_query,
)
from pantau.influx_async import AsyncInflux, rows
from pantau.registry import Registry
from processors.catalog import CATALOG

__all__ = ["build_report", "report_devices"]

_NS = 1_000_000_000


def report_devices(registry: Registry | None, state: LiveState) -> list[ReportDevice]:
    """The registry's devices (with thresholds and ratings), else the live state's ones."""
    if registry is not None:
        return [
            ReportDevice(
                d.device_id,
                d.kind,
                d.city,
                d.district,
                d.lat,
                d.lon,
                d.interval_s,
                d.waspada_cm,
                d.siaga_cm,
                d.awas_cm,
                d.rated_w,
            )
            for d in registry
        ]
    return [
        ReportDevice(d.device_id, d.kind, d.city, d.district, d.lat, d.lon, d.interval_s)
        for d in state.devices.values()
    ]


def _seconds(ns: Any) -> int:
    return int(ns) // _NS


def _by_device_bucket(found: list[dict[str, Any]], name: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for row in found:
        value = row.get(name)
        if isinstance(value, int | float) and row.get("device_id"):
            out.setdefault(row["device_id"], {})[_seconds(row["time"])] = float(value)
    return out


def _lamps(found: list[dict[str, Any]], before: list[dict[str, Any]]) -> dict[str, LampReadings]:
    """Each lamp's readings in time order, led by its last counter value before the period.

    That leading row has only `energy_wh` (no state: it counts for no night and no day), so the
    counter's step into the period is credited to the period's first day.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in found:
        if row.get("device_id"):
            grouped.setdefault(str(row["device_id"]), []).append(row)
    for row in before:
        device = str(row.get("device_id", ""))
        if device in grouped and isinstance(row.get("energy_wh"), int | float):
            grouped[device].append({"time": row["time"], "energy_wh": row["energy_wh"]})

    def column(items: list[dict[str, Any]], name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array(
            [float(v) if isinstance(v := r.get(name), int | float) else np.nan for r in items]
        )

    out = {}
    for device, items in grouped.items():
        items.sort(key=lambda r: int(r["time"]))
        out[device] = LampReadings(
            ts=np.array([int(r["time"]) / _NS for r in items]),
            lamp_on=column(items, "lamp_on"),
            dim_pct=column(items, "dim_pct"),
            power_w=column(items, "power_w"),
            energy_wh=column(items, "energy_wh"),
        )
    return out


async def _inputs(influx: AsyncInflux, scope: Scope, kinds: set[str]) -> ReportInputs:
    """Run the report's queries concurrently (one per figure, one count per kind)."""
    count_kinds = sorted(k for k in kinds if k in CATALOG)
    ispu, level, lamps, before, *counts = await asyncio.gather(
        influx.query(ispu_query(scope)),
        influx.query(level_query(scope)),
        influx.query(lamp_query(scope)),
        influx.query(energy_before_query(scope)),
        *(influx.query(counts_query(k, CATALOG[k].field_names, scope)) for k in count_kinds),
    )
    inputs = ReportInputs(
        ispu=_by_device_bucket(rows(ispu), "ispu"),
        level=_by_device_bucket(rows(level), "level_cm"),
        lamps=_lamps(rows(lamps), rows(before)),
    )
    for kind, series in zip(count_kinds, counts, strict=True):
        for row in rows(series):
            if not row.get("device_id"):
                continue
            # A reading is a point; every point has at least one field: the most counted one.
            received = max((v for f in CATALOG[kind].field_names if (v := row.get(f))), default=0)
            inputs.counts.setdefault(str(row["device_id"]), {})[_seconds(row["time"])] = int(
                received
            )
    return inputs


async def build_report(
    influx: AsyncInflux,
    devices: Sequence[ReportDevice],
    period: Period,
    district: str | None,
) -> dict[str, Any]:
    """The report's JSON (docs/reports.md); `district` must be one of the devices' districts."""
    chosen = [d for d in devices if district is None or d.district == district]
    scope = Scope(
        start=period.start,
        end=period.end,
        cities=tuple(sorted({d.city for d in chosen})),
        district=district,
        time_zone=period.time_zone,
    )
    inputs = (
        await _inputs(influx, scope, {d.kind for d in chosen})
        if chosen and period.end > period.start
        else ReportInputs()
    )
    return {
        "period": period.kind,
        "month": period.label if period.kind == "monthly" else None,
        "date": period.label if period.kind == "daily" else None,
        "start": period.start,
        "end": period.end,
        "time_zone": period.time_zone,
        "areas": build_areas(chosen, inputs, period, district),
    }
