"""The Pantau API: build the app for one process (`create_app`), its parts started in lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.anomaly_store import AnomalyStore
from api.broker import BrokerLink
from api.context import ApiContext
from api.feed import FeedHub
from api.limits import BodyLimitMiddleware
from api.livestate import LiveState
from api.metrics import ApiMetrics, MetricsMiddleware
from api.problems import OrjsonResponse, install_problem_handlers
from api.queries import AnomalyFilter
from api.ratelimit import RateLimiter
from api.routes import anomalies, catalog, devices, dimensions, feed, health, indicators
from api.scoring import ScoringModel
from api.tokens import TokenStore
from pantau.influx import InfluxError
from pantau.influx_async import AsyncInflux
from pantau.registry import Registry
from pantau.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"
_SEED_RETRY_S: Final = 5.0


def _context(settings: Settings, registry: Registry | None) -> ApiContext:
    metrics = ApiMetrics()
    state = LiveState(
        open_anomaly_s=settings.api.open_anomaly_s,
        anomaly_status_s=settings.api.anomaly_status_s,
    )
    if registry is not None:
        state.add_registry(registry)
    hub = FeedHub(settings.api.feed_max_frames, metrics.feed_events_dropped.inc)
    link = BrokerLink(settings, state, hub.publish, metrics.derived_messages.inc)
    influx = AsyncInflux(settings)
    return ApiContext(
        settings=settings,
        state=state,
        hub=hub,
        link=link,
        influx=influx,
        anomalies=AnomalyStore(influx),
        tokens=TokenStore(settings.effective_tokens_file),
        model=ScoringModel.load(settings.api.scoring_model),
        metrics=metrics,
        limiter=RateLimiter(settings.api.rate_per_s, settings.api.rate_burst),
    )


async def _seed_anomalies(ctx: ApiContext) -> None:
    """Load the open window's anomalies from InfluxDB: they are events, not retained."""
    while True:
        now = time.time()
        flt = AnomalyFilter(
            since_ns=int((now - ctx.settings.api.open_anomaly_s) * 1e9),
            until_ns=int((now + 3600) * 1e9),
        )
        try:
            found = await ctx.anomalies.find(flt, 10_000)
        except InfluxError as exc:
            log.warning("could not load recent anomalies; retrying", extra={"error": str(exc)})
            await asyncio.sleep(_SEED_RETRY_S)
            continue
        ctx.state.add_anomalies(reversed(found))
        log.info("recent anomalies loaded", extra={"count": len(found)})
        return


def create_app(settings: Settings, registry: Registry | None = None) -> FastAPI:
    """One API app; its broker link, feed flusher and InfluxDB pool live as long as it does."""
    ctx = _context(settings, registry)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(ctx.link.run(), name="api-broker-link"),
            asyncio.create_task(ctx.hub.run(settings.api.feed_interval_s), name="api-feed-flush"),
            asyncio.create_task(_seed_anomalies(ctx), name="api-seed-anomalies"),
        ]
        try:
            yield
        finally:
            ctx.hub.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ctx.influx.close()

    app = FastAPI(
        title="Pantau API",
        version="0.1.0",
        summary="Live indicators, six-dimension scores and live feeds of a Pantau deployment.",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    for module in (health, devices, indicators, dimensions, anomalies, feed, catalog):
        app.include_router(module.router)
    # ES modules load only with a JavaScript type; some hosts' MIME tables map .js otherwise.
    mimetypes.add_type("text/javascript", ".js")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    return app
