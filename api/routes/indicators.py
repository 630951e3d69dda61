"""Indicators: latest per device, per district and for the regency."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from api.auth import require
from api.context import context
from api.livestate import LiveState
from api.models import DistrictSummaries, DistrictSummary, IndicatorList, RegencySummary
from api.problems import OrjsonResponse, Problem
from api.routes.params import Kind, Segment
from api.tokens import Scope
from pantau.derived import DISTRICT_DEVICE

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/indicators", tags=["indicators"], dependencies=[Depends(require(Scope.READ))]
)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get("", response_model=IndicatorList)
async def device_indicators(
    request: Request, kind: Kind | None = None, district: Segment | None = None
) -> Response:
    """The latest indicators of every device (ISPU, flood level, lamp working...)."""
    ctx = context(request)
    key = ("indicators", kind or "", district or "")
    return _json(ctx.cached_json(key, lambda: _device_indicators(ctx.state, kind, district)))


def _device_indicators(state: LiveState, kind: str | None, district: str | None) -> dict[str, Any]:
    out = [
        {
            "kind": e.kind,
            "city": e.city,
            "district": e.district,
            "device_id": e.device_id,
            "ts": e.ts,
            "values": e.values,
        }
        for e in state.indicators.values()
        if e.device_id != DISTRICT_DEVICE
        and (kind is None or e.kind == kind)
        and (district is None or e.district == district)
    ]
    out.sort(key=lambda e: (e["kind"], e["device_id"]))
    return {"count": len(out), "indicators": out}


@router.get("/regency", response_model=RegencySummary)
async def regency(request: Request) -> Response:
    """The regency's air, flood and streetlight summary."""
    ctx = context(request)

    def build() -> dict[str, Any]:
        areas = ctx.areas()
        return {"ts": areas["ts"], **areas["regency"]}

    return _json(ctx.cached_json(("regency",), build))


@router.get("/districts", response_model=DistrictSummaries)
async def districts(request: Request) -> Response:
    """Every district's air, flood and streetlight summary."""
    ctx = context(request)

    def build() -> dict[str, Any]:
        areas = ctx.areas()
        return {"ts": areas["ts"], "districts": areas["districts"]}

    return _json(ctx.cached_json(("districts",), build))


@router.get("/districts/{district}", response_model=DistrictSummary)
async def district(request: Request, district: str) -> Response:
    """One district's summary."""
    areas = context(request).areas()
    found = areas["districts"].get(district)
    if found is None:
        raise Problem(404, "no indicators for that district")
    return OrjsonResponse({"ts": areas["ts"], "district": district, **found})
