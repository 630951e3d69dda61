"""Health and readiness (no token), and Prometheus metrics (read scope)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import require
from api.context import context
from api.models import Health, Readiness
from api.tokens import Scope

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: the failing check is false"}},
)
async def ready(request: Request) -> JSONResponse:
    """Ready when the broker link is up and feeds the live feed, and InfluxDB answers.

    503 and which one is not. Worked out at most once a second: probes cost no InfluxDB ping.
    """
    checks = await context(request).readiness()
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
    )


@router.get(
    "/metrics",
    dependencies=[Depends(require(Scope.READ))],
    response_class=PlainTextResponse,
    response_description="Prometheus text exposition format",
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this API process."""
    ctx = context(request)
    ctx.metrics.broker_connected.set(1 if ctx.link.connected.is_set() else 0)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
