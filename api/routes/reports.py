"""Daily and monthly reports per district and for the regency, as JSON or CSV; hourly scores."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response

from api.auth import require
from api.context import ApiContext, context
from api.history_recorder import scores_history
from api.problems import OrjsonResponse, Problem, influx_problem
from api.queries import check_segment, parse_time
from api.reports.csv_out import report_csv
from api.reports.figures import ReportDevice
from api.reports.models import Report, ScoreHistory
from api.reports.period import Period, daily_period, monthly_period
from api.reports.service import build_report, report_devices
from api.tokens import Scope
from pantau.influx import InfluxError
from pantau.registry import Registry, RegistryError

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/reports", tags=["reports"], dependencies=[Depends(require(Scope.READ))]
)

_DEFAULT_SCORES_S = 30 * 86400
_MAX_SCORES_S = 400 * 86400
Format = Annotated[str, Query(pattern="^(json|csv)$")]


async def _devices(ctx: ApiContext) -> list[ReportDevice]:
    """The registry's devices, read afresh (it has the thresholds and ratings the state lacks)."""
    registry: Registry | None = None
    if ctx.settings.registry is not None:
        try:
            registry = await asyncio.to_thread(Registry.from_csv, ctx.settings.registry)
        except (OSError, RegistryError) as exc:
            log.error("the registry cannot be read for a report", extra={"error": str(exc)})
            raise Problem(
                503, "the device registry cannot be read; the API's log says why"
            ) from None
    return report_devices(registry, ctx.state)


def _district(devices: list[ReportDevice], district: str | None) -> str | None:
    if district is None:
        return None
    check_segment(district, "district")
    if district not in {d.district for d in devices}:
        raise Problem(422, "district: no registered device there")
    return district


async def _answer(request: Request, period: Period, district: str | None, fmt: str) -> Response:
    ctx = context(request)
    devices = await _devices(ctx)
    chosen = _district(devices, district)
    try:
        report = await build_report(ctx.influx, devices, period, chosen)
    except InfluxError as exc:
        raise influx_problem(exc, "the report") from None
    if fmt == "csv":
        name = f"pantau-{period.kind}-{period.label}{'-' + chosen if chosen else ''}.csv"
        return Response(
            report_csv(report).encode(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return OrjsonResponse(report)


def _today(ctx: ApiContext, now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, ZoneInfo(ctx.settings.api.time_zone)).date()


@router.get("/monthly", response_model=Report)
async def monthly(
    request: Request,
    month: str | None = None,
    district: str | None = None,
    format: Format = "json",
) -> Response:
    """One month's figures (YYYY-MM, default this month) for the regency and each district.

    `format=csv` answers the same figures as `text/csv`, one row per area (docs/reports.md).
    """
    ctx = context(request)
    now = time.time()
    month = month if month is not None else _today(ctx, now).strftime("%Y-%m")
    period = monthly_period(month, ctx.settings.api.time_zone, now)
    return await _answer(request, period, district, format)


@router.get("/daily", response_model=Report)
async def daily(
    request: Request,
    date: str | None = None,
    district: str | None = None,
    format: Format = "json",
) -> Response:
    """One day's figures (YYYY-MM-DD, default today) for the regency and each district.

    `format=csv` answers the same figures as `text/csv`, one row per area (docs/reports.md).
    """
    ctx = context(request)
    now = time.time()
    date = date if date is not None else _today(ctx, now).isoformat()
    period = daily_period(date, ctx.settings.api.time_zone, now)
    return await _answer(request, period, district, format)


@router.get("/scores", response_model=ScoreHistory)
async def scores(
    request: Request,
    district: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Response:
    """The hourly stored six dimension scores and area metrics of one area."""
    ctx = context(request)
    now = time.time()
    until = parse_time(end, "end") if end is not None else now
    since = parse_time(start, "start") if start is not None else until - _DEFAULT_SCORES_S
    if since >= until:
        raise Problem(422, "start: must be before end")
    if until - since > _MAX_SCORES_S:
        raise Problem(422, f"start/end: at most {_MAX_SCORES_S // 86400} days per request")
    area = "regency"
    if district is not None:
        check_segment(district, "district")
        area = district
    try:
        points = await scores_history(ctx.influx, area, since, until)
    except InfluxError as exc:
        raise influx_problem(exc, "the score history") from None
    return OrjsonResponse({"area": area, "source": "area_hourly", "points": points})
