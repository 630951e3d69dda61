"""The Pantau API: build the app for one process (`create_app`), its parts started in lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import mimetypes
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import aiomqtt
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.alerts.owners import PRESENCE_ALL, presence_topic
from api.alerts.rules import load_rules
from api.alerts.service import AlertService
from api.alerts.store import AlertStore
from api.anomaly_store import AnomalyStore
from api.broker import BrokerLink
from api.context import ApiContext
from api.feed import FeedHub
from api.history_recorder import HourlyRecorder
from api.limits import BodyLimitMiddleware
from api.livestate import LiveState
from api.metrics import ApiMetrics, MetricsMiddleware
from api.problems import OrjsonResponse, install_problem_handlers, problem_response
from api.queries import AnomalyFilter
from api.ratelimit import RateLimiter
from api.routes import (
    alerts,
    anomalies,
    catalog,
    devices,
    dimensions,
    feed,
    health,
    indicators,
    pages,
    reports,
)
from api.scoring import ScoringModel
from api.tokens import TokenStore
from pantau.influx import InfluxError
from pantau.influx_async import AsyncInflux
from pantau.registry import Registry
from pantau.rollups import ensure_rollups_async
from pantau.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"
_SEED_RETRY_S: Final = 5.0
# How often the hourly recorder looks for a whole hour of observation time passed.
_RECORD_TICK_S: Final = 2.0
# Revoked tokens' open feeds are closed within this (plus a flush).
_REVOCATION_CHECK_S: Final = 0.25

# The dashboard loads only its own modules, styles, data and API; it sets style attributes
# (bar widths, colours), which `style-src-attr` allows without allowing <style> or scripts.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# /docs and /redoc (off unless `api.docs_enabled`) load their scripts from a CDN and inline.
_DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_INTERNAL: Final = "the API failed on this request; its log has the details"
_DOCS_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


class SecurityHeadersMiddleware:
    """Browser hardening headers on every HTTP response, errors included."""

    def __init__(self, app: ASGIApp, docs_enabled: bool = False) -> None:
        self.app = app
        self.docs_paths = _DOCS_PATHS if docs_enabled else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = _DOCS_CSP if scope.get("path") in self.docs_paths else CSP

        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = csp
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            # The traceback goes to the log (re-raised to the server); the client learns nothing.
            if not started:
                await problem_response(500, _INTERNAL)(scope, receive, with_headers)
            raise


def _context(settings: Settings, registry: Registry | None) -> ApiContext:
    metrics = ApiMetrics()
    state = LiveState(
        open_anomaly_s=settings.api.open_anomaly_s,
        anomaly_status_s=settings.api.anomaly_status_s,
    )
    if registry is not None:
        state.add_registry(registry)
    hub = FeedHub(settings.api.feed_max_frames, metrics.feed_events_dropped.inc)
    influx = AsyncInflux(settings)
    service: AlertService | None = None
    on_event: Callable[[dict[str, Any]], None] = hub.publish
    link = BrokerLink(settings, state, lambda event: on_event(event), metrics.derived_messages.inc)
    if settings.alerts.enabled:
        # Bad rules stop the API here, before it serves anything (`pantau api` says where).
        service = AlertService(
            settings,
            load_rules(settings.alerts.rules),
            state,
            AlertStore(influx),
            hub.publish,
            metrics,
            link.client_id,
        )
        on_event = _both(hub.publish, service.on_event)
        # Episode acks arrive on the ack topics the link follows anyway (ALERT_ACK_PREFIX).
        link.extra_topics = (PRESENCE_ALL,)
        link.on_ops = service.on_ops
        # A replica that vanishes clears its presence, so ownership moves on at once.
        link.will = aiomqtt.Will(presence_topic(link.client_id), b"", qos=1, retain=True)
        service.bind_mqtt(link.publish_bytes)
    ctx = ApiContext(
        settings=settings,
        state=state,
        hub=hub,
        link=link,
        influx=influx,
        anomalies=AnomalyStore(influx),
        tokens=TokenStore(settings.effective_tokens_file),
        # Answers name the model by its file name only: never a path of this host.
        model=dataclasses.replace(
            ScoringModel.load(settings.api.scoring_model), source=settings.api.scoring_model.name
        ),
        metrics=metrics,
        limiter=RateLimiter(settings.api.rate_per_s, settings.api.rate_burst),
        alerts=service,
    )
    if service is not None:
        service.score_source = ctx.scores
    return ctx


def _both(
    first: Callable[[dict[str, Any]], None], second: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    def call(event: dict[str, Any]) -> None:
        first(event)
        second(event)

    return call


async def _set_up_rollups(ctx: ApiContext) -> None:
    """Create or update the retention policies and continuous queries (idempotent)."""
    try:
        changed = await ensure_rollups_async(ctx.influx, ctx.settings)
    except InfluxError as exc:
        # InfluxDB 2.x/3.x refuse these statements: their downsampling is set up there
        # (docs/history.md); history is then served from raw data.
        log.warning("rollups not set up", extra={"error": str(exc)})
        return
    log.info("rollups checked", extra={"changed": len(changed)})


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
            *(
                [asyncio.create_task(ctx.alerts.run(), name="api-alerts")]
                if ctx.alerts is not None
                else []
            ),
            *(
                [asyncio.create_task(_set_up_rollups(ctx), name="api-rollups")]
                if settings.history.rollups
                else []
            ),
            *(
                [
                    asyncio.create_task(
                        HourlyRecorder(ctx.state, ctx.model, ctx.influx).run(_RECORD_TICK_S),
                        name="api-hourly-recorder",
                    )
                ]
                if settings.history.record_hourly
                else []
            ),
            asyncio.create_task(
                ctx.tokens.watch_revocations(_REVOCATION_CHECK_S), name="api-token-revocations"
            ),
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
        # Their pages load scripts from a CDN, on the dashboard's origin: off unless asked for.
        docs_url="/docs" if settings.api.docs_enabled else None,
        redoc_url="/redoc" if settings.api.docs_enabled else None,
    )
    app.state.ctx = ctx
    # Requests without a valid token, per client address (api/auth.py).
    app.state.unauth_limiter = RateLimiter(
        settings.api.unauth_rate_per_s, settings.api.unauth_rate_burst
    )
    install_problem_handlers(app)
    for module in (
        health,
        devices,
        indicators,
        dimensions,
        anomalies,
        alerts,
        feed,
        catalog,
        reports,
        pages,
    ):
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
    app.add_middleware(SecurityHeadersMiddleware, docs_enabled=settings.api.docs_enabled)
    return app
