"""Everything one API process holds, built at start-up and reached through the request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import Request
from starlette.requests import HTTPConnection

from api.alerts.service import AlertService
from api.anomaly_store import AnomalyStore
from api.areas import area_metrics, area_summary
from api.broker import BrokerLink, RejectionLog
from api.feed import FeedHub
from api.livestate import IndicatorEntry, LiveState
from api.metrics import ApiMetrics
from api.ratelimit import RateLimiter
from api.scoring import ScoringModel
from api.tokens import TokenStore
from pantau.influx_async import AsyncInflux
from pantau.settings import Settings

__all__ = ["ApiContext", "context"]

# Area summaries, scores and their JSON are rebuilt at most this often while readings stream in.
_SUMMARY_EVERY_S = 0.5
_MAX_CACHED_ANSWERS = 512
# Readiness (a broker check and an InfluxDB ping) is worked out at most this often.
_READY_EVERY_S = 1.0


@dataclass
class _Cached:
    version: int = -1
    at: float = 0.0
    value: Any = None


@dataclass
class ApiContext:
    """The API's parts: settings, live state, feed, broker link, InfluxDB, tokens, model."""

    settings: Settings
    state: LiveState
    hub: FeedHub
    link: BrokerLink
    influx: AsyncInflux
    anomalies: AnomalyStore
    tokens: TokenStore
    model: ScoringModel
    metrics: ApiMetrics
    limiter: RateLimiter
    alerts: AlertService | None = None
    _areas: _Cached = field(default_factory=_Cached)
    _scores: _Cached = field(default_factory=_Cached)
    _answers: dict[tuple[str, ...], _Cached] = field(default_factory=dict)
    _ready: _Cached = field(default_factory=_Cached)
    _ready_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
    _rejection_log: RejectionLog = field(default_factory=RejectionLog)
    _stale_read: bool = False

    def __post_init__(self) -> None:
        """Wire the parts to the settings' bounds and to the metrics."""
        self.state.configure(self.settings.api)
        self.state.on_reject = self._rejected
        self.state.on_bound = self.metrics.bounded
        self.hub.on_failed = self.metrics.feed_events_failed.inc
        self.metrics.watch_state(self.state.sizes, tuple(self.state.sizes()))
        self.metrics.feed_alive.set_function(lambda: 1.0 if self.hub.healthy() else 0.0)

    def _rejected(self, reason: str, topic: str, detail: str) -> None:
        self.metrics.derived_rejected.labels(reason).inc()
        self._rejection_log(reason, topic, detail)

    async def readiness(self) -> dict[str, bool]:
        """The readiness checks, worked out at most once a second (concurrent callers share).

        `broker`: the link is connected and its task runs; `feed`: the live feed's flush task
        runs; `influxdb`: InfluxDB answers a ping.
        """
        slot = self._ready
        if slot.value is not None and time.monotonic() - slot.at < _READY_EVERY_S:
            checks: dict[str, bool] = slot.value
            return checks
        loop = asyncio.get_running_loop()
        if self._ready_lock is None or self._ready_lock[0] is not loop:
            self._ready_lock = (loop, asyncio.Lock())
        async with self._ready_lock[1]:
            if slot.value is not None and time.monotonic() - slot.at < _READY_EVERY_S:
                checks = slot.value
                return checks
            link = self.link.alive and self.link.connected.is_set()
            checks = {
                "broker": link,
                "feed": self.hub.healthy(),
                "influxdb": await self.influx.ping(),
            }
            slot.at, slot.value = time.monotonic(), checks
        return checks

    def cached_json(self, key: tuple[str, ...], build: Callable[[], Any]) -> bytes:
        """An answer's JSON, rebuilt only when the state changed (and at most every 0.5 s).

        Many clients polling the same summary then cost one encoding, not one each.
        """
        slot = self._answers.get(key)
        if slot is None:
            if len(self._answers) >= _MAX_CACHED_ANSWERS:
                self._answers.clear()
            slot = self._answers[key] = _Cached()
        encoded: bytes = self._cached(slot, lambda: orjson.dumps(build()))
        return encoded

    def areas(self) -> dict[str, Any]:
        """Indicator summaries for the regency and per district (cached briefly)."""
        areas: dict[str, Any] = self._cached(self._areas, self._compute_areas)
        return areas

    def scores(self) -> dict[str, Any]:
        """Dimension scores for the regency and per district (cached briefly)."""
        scores: dict[str, Any] = self._cached(self._scores, self._compute_scores)
        return scores

    def _cached(self, slot: _Cached, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        if slot.version == self.state.version:
            return slot.value
        if slot.value is not None and now - slot.at < _SUMMARY_EVERY_S:
            self._stale_read = True  # an older state's value: whoever builds on it is stale too
            return slot.value
        version, outer = self.state.version, self._stale_read
        self._stale_read = False
        value = compute()
        # Built on a cached part that was older than this version (areas inside an answer):
        # rebuilt at the next chance, or it would stay stale until the state changes again.
        slot.version = -1 if self._stale_read else version
        slot.at, slot.value = now, value
        self._stale_read = outer or self._stale_read
        return value

    def _compute_areas(self) -> dict[str, Any]:
        by_district: dict[str, list[IndicatorEntry]] = {}
        for entry in self.state.indicators.values():
            by_district.setdefault(entry.district, []).append(entry)
        now = time.time()
        return {
            "ts": now,
            "regency": area_summary(self.state.indicators.values()),
            "districts": {d: area_summary(e) for d, e in sorted(by_district.items())},
        }

    def _compute_scores(self) -> dict[str, Any]:
        areas = self.areas()
        now = time.time()
        return {
            "ts": now,
            "model": self.model.source,
            "regency": {"dimensions": self.model.score(area_metrics(areas["regency"]), now)},
            "districts": {
                d: {"dimensions": self.model.score(area_metrics(s), now)}
                for d, s in areas["districts"].items()
            },
        }


def context(connection: HTTPConnection | Request) -> ApiContext:
    """The context of the app serving this request or WebSocket."""
    ctx: ApiContext = connection.app.state.ctx
    return ctx
