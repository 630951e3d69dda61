"""The six smart-city dimensions, scored per district and for the regency."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from api.auth import require
from api.context import context
from api.models import DistrictScores, Scores
from api.problems import OrjsonResponse, Problem
from api.tokens import Scope

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/dimensions", tags=["dimensions"], dependencies=[Depends(require(Scope.READ))]
)


@router.get("", response_model=Scores)
async def all_scores(request: Request) -> Response:
    """Scores of the six dimensions for the regency and every district, with contributions."""
    ctx = context(request)
    return Response(ctx.cached_json(("dimensions",), ctx.scores), media_type="application/json")


@router.get("/{district}", response_model=DistrictScores)
async def district_scores(request: Request, district: str) -> Response:
    """One district's six dimension scores."""
    scores = context(request).scores()
    found = scores["districts"].get(district)
    if found is None:
        raise Problem(404, "no indicators for that district")
    return OrjsonResponse(
        {"ts": scores["ts"], "model": scores["model"], "district": district, **found}
    )
