"""Devices: the list with status, one device in full, and a field's downsampled history."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response

from api.auth import require
from api.context import context
from api.livestate import DeviceInfo
from api.models import DeviceDetail, DeviceList, History, Status
from api.problems import OrjsonResponse, Problem, influx_problem
from api.queries import check_segment, history_query, parse_time
from api.routes.params import DeviceId, Kind, Segment
from api.tokens import Scope
from pantau.influx import InfluxClientError, InfluxError
from pantau.influx_async import rows
from pantau.rollups import Source, pick_source, split_range
from processors.catalog import CATALOG

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/devices", tags=["devices"], dependencies=[Depends(require(Scope.READ))]
)

DEFAULT_FIELD: Final = {"air_quality": "pm25", "water_level": "level_cm", "streetlight": "power_w"}
# Without an interval, a history answer aims at about this many points.
_TARGET_POINTS: Final = 500
_NICE_INTERVALS: Final = (
    1,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    604800,
)


def _device(request: Request, device_id: str) -> DeviceInfo:
    check_segment(device_id, "device_id")
    device = context(request).state.devices.get(device_id)
    if device is None:
        raise Problem(404, f"no device {device_id!r} is registered or has reported")
    return device


@router.get("", response_model=DeviceList)
async def list_devices(
    request: Request,
    kind: Kind | None = None,
    district: Segment | None = None,
    status: Status | None = None,
) -> Response:
    """Devices with their status (ok, anomaly, offline, unknown), filtered."""
    state = context(request).state
    now = time.time()
    counts = state.open_counts(now)
    out = []
    for device in state.devices.values():
        if (kind and device.kind != kind) or (district and device.district != district):
            continue
        item = state.device_json(device, now, counts.get(device.device_id))
        if status and item["status"] != status:
            continue
        out.append(item)
    out.sort(key=lambda d: d["device_id"])
    return OrjsonResponse({"count": len(out), "devices": out})


@router.get("/{device_id}", response_model=DeviceDetail)
async def get_device(request: Request, device_id: DeviceId) -> Response:
    """One device: its newest reading, its latest indicators and its open anomalies."""
    device = _device(request, device_id)
    state = context(request).state
    now = time.time()
    anomalies = state.open_anomalies(device.device_id, now)
    reading = state.readings.get(device.device_id)
    indicator = state.indicators.get((device.kind, device.district, device.device_id))
    body = {
        "device": state.device_json(
            device, now, (len(anomalies), anomalies[0].ts) if anomalies else None
        ),
        "latest": None if reading is None else {"ts": reading.ts, "values": reading.values},
        "indicators": None
        if indicator is None
        else {"ts": indicator.ts, "values": indicator.values},
        "anomalies": [a.as_json() for a in anomalies],
    }
    return OrjsonResponse(body)


@router.get("/{device_id}/history", response_model=History)
async def history(
    request: Request,
    device_id: DeviceId,
    field: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,32}$")] = None,
    start: Annotated[str | None, Query(max_length=40, description="epoch s or RFC 3339")] = None,
    end: Annotated[str | None, Query(max_length=40, description="epoch s or RFC 3339")] = None,
    interval: Annotated[int | None, Query(ge=1, le=31 * 86400, description="seconds")] = None,
) -> Response:
    """A field over a time range: mean, min, max and last per interval (InfluxQL GROUP BY)."""
    device = _device(request, device_id)
    ctx = context(request)
    settings = ctx.settings
    kind = device.kind
    if kind not in CATALOG:
        raise Problem(422, f"device {device_id!r} has unknown kind {kind!r}")
    name = field or DEFAULT_FIELD[kind]
    if name not in CATALOG[kind].field_names:
        raise Problem(422, f"field: {kind} fields are {', '.join(CATALOG[kind].field_names)}")
    end_s = parse_time(end, "end") if end is not None else time.time()
    start_s = parse_time(start, "start") if start is not None else end_s - 86400.0
    span = end_s - start_s
    if span <= 0:
        raise Problem(422, "start must be before end")
    if span > settings.api.history_max_days * 86400:
        raise Problem(422, f"the range may span at most {settings.api.history_max_days:g} days")
    if interval is None:
        wanted = span / _TARGET_POINTS
        interval = next((i for i in _NICE_INTERVALS if i >= wanted), math.ceil(wanted))
    if span / interval > settings.api.history_max_points:
        raise Problem(
            422,
            f"{math.ceil(span / interval)} intervals asked; at most "
            f"{settings.api.history_max_points}: widen the interval or narrow the range",
        )
    source = pick_source(span, interval) if settings.history.rollups else Source.RAW
    parts = split_range(source, start_s, end_s, interval, time.time())
    source = parts[0][0] if len(parts) == 1 else source
    started = time.perf_counter()

    async def read(parts: list[tuple[Source, float, float]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for part_source, lo, hi in parts:
            query = history_query(
                kind, name, device.device_id, int(lo * 1e9), int(hi * 1e9), interval, part_source
            )
            found.extend(rows(await ctx.influx.query(query)))
        return found

    try:
        try:
            found = await read(parts)
        except InfluxClientError as exc:
            # Rollups not set up (yet, or not on this server): raw points still answer.
            if source is Source.RAW or "retention policy not found" not in exc.message:
                raise
            log.warning("history: no rollup policy, reading raw", extra={"error": exc.message})
            source, parts = Source.RAW, [(Source.RAW, start_s, end_s)]
            found = await read(parts)
    except InfluxError as exc:
        raise influx_problem(exc, "history") from None
    query_ms = (time.perf_counter() - started) * 1000.0
    found.sort(key=lambda r: int(r["time"]))
    points = [
        {
            "ts": int(r["time"]) / 1e9,
            "mean": r["mean"],
            "min": r["min"],
            "max": r["max"],
            "last": r["last"],
        }
        for r in found
    ]
    log.info(
        "history served",
        extra={
            "device_id": device.device_id,
            "field": name,
            "source": source.value,
            "parts": len(parts),
            "span_s": round(span),
            "interval_s": interval,
            "points": len(points),
            "query_ms": round(query_ms, 1),
        },
    )
    return OrjsonResponse(
        {
            "device_id": device.device_id,
            "kind": kind,
            "field": name,
            "start": start_s,
            "end": end_s,
            "interval_s": interval,
            "source": source.value,
            "points": points,
        },
        headers={"X-Pantau-Source": source.value},
    )
