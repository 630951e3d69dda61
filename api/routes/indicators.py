"""Indicators: latest per device, per district and for the regency."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require
from api.context import context
from api.livestate import DISTRICT_DEVICE
from api.problems import Problem
from api.tokens import Scope

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/indicators", tags=["indicators"], dependencies=[Depends(require(Scope.READ))]
)

Kind = Literal["air_quality", "water_level", "streetlight"]
Segment = Annotated[str, Query(pattern=r"^[a-z0-9_-]{1,64}$")]


@router.get("")
async def device_indicators(
    request: Request, kind: Kind | None = None, district: Segment | None = None
) -> dict[str, Any]:
    """The latest indicators of every device (ISPU, flood level, lamp working...)."""
    state = context(request).state
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


@router.get("/regency")
async def regency(request: Request) -> dict[str, Any]:
    """The regency's air, flood and streetlight summary."""
    areas = context(request).areas()
    return {"ts": areas["ts"], **areas["regency"]}


@router.get("/districts")
async def districts(request: Request) -> dict[str, Any]:
    """Every district's air, flood and streetlight summary."""
    areas = context(request).areas()
    return {"ts": areas["ts"], "districts": areas["districts"]}


@router.get("/districts/{district}")
async def district(request: Request, district: str) -> dict[str, Any]:
    """One district's summary."""
    areas = context(request).areas()
    found = areas["districts"].get(district)
    if found is None:
        raise Problem(404, "no indicators for that district")
    return {"ts": areas["ts"], "district": district, **found}
