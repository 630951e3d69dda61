"""The six smart-city dimensions, scored per district and for the regency."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from api.auth import require
from api.context import context
from api.problems import Problem
from api.tokens import Scope

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/dimensions", tags=["dimensions"], dependencies=[Depends(require(Scope.READ))]
)


@router.get("", response_class=Response)
async def all_scores(request: Request) -> Response:
    """Scores of the six dimensions for the regency and every district, with contributions."""
    ctx = context(request)
    return Response(ctx.cached_json(("dimensions",), ctx.scores), media_type="application/json")


@router.get("/{district}")
async def district_scores(request: Request, district: str) -> dict[str, Any]:
    """One district's six dimension scores."""
    scores = context(request).scores()
    found = scores["districts"].get(district)
    if found is None:
        raise Problem(404, "no indicators for that district")
    return {"ts": scores["ts"], "model": scores["model"], "district": district, **found}
