"""Prometheus metrics of one API process, in a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiMetrics", "MetricsMiddleware"]


class ApiMetrics:
    """Requests, latency, feed clients and what the broker delivers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pantau_api_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "pantau_api_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.alert_events = Counter(
            "pantau_api_alert_events",
            "Alert episode events (open, update, escalate, close, ack)",
            ["event"],
            registry=r,
        )
        self.notifications_sent = Counter(
            "pantau_api_notifications_sent", "Notifications delivered", ["channel"], registry=r
        )
        self.notification_retries = Counter(
            "pantau_api_notification_retries",
            "Notification tries that failed and will be retried",
            ["channel"],
            registry=r,
        )
        self.notifications_dead = Counter(
            "pantau_api_notifications_dead",
            "Notifications given up after their tries: the dead-letter list",
            ["channel"],
            registry=r,
        )
        self.notifications_pending = Gauge(
            "pantau_api_notifications_pending",
            "Notifications waiting to be delivered or retried",
            registry=r,
        )
        self.derived_messages = Counter(
            "pantau_api_derived_messages", "Messages received from the derived topics", registry=r
        )
        self.feed_clients = Gauge(
            "pantau_api_feed_clients", "Live feed clients connected", ["transport"], registry=r
        )
        self.feed_events_dropped = Counter(
            "pantau_api_feed_events_dropped",
            "Events a slow client lost (its oldest frames)",
            registry=r,
        )
        self.broker_connected = Gauge(
            "pantau_api_broker_connected", "1 while connected to the MQTT broker", registry=r
        )
        # The broker is untrusted input: what it sent that the API refused, and the bounds.
        self.derived_rejected = Counter(
            "pantau_api_derived_rejected",
            "Derived messages (or batch entries) rejected, by reason",
            ["reason"],
            registry=r,
        )
        self.feed_events_failed = Counter(
            "pantau_api_feed_events_failed",
            "Feed events that could not be sent (encoding or flush errors)",
            registry=r,
        )
        self.state_size = Gauge(
            "pantau_api_state_size", "Entries the live state holds, by part", ["part"], registry=r
        )
        self.state_refused = Counter(
            "pantau_api_state_refused",
            "New entries refused because a part of the live state is at its bound",
            ["part"],
            registry=r,
        )
        self.state_evicted = Counter(
            "pantau_api_state_evicted",
            "Oldest entries evicted to keep a part of the live state within its bound",
            ["part"],
            registry=r,
        )
        self.feed_alive = Gauge(
            "pantau_api_feed_alive", "1 while the live feed's flush task runs", registry=r
        )

    def watch_state(self, sizes: Callable[[], dict[str, int]], parts: tuple[str, ...]) -> None:
        """Report the live state's sizes (read when scraped)."""
        for part in parts:
            self.state_size.labels(part).set_function(_size_of(sizes, part))

    def bounded(self, part: str, action: str, count: int) -> None:
        """Count entries refused or evicted by a bound of the live state."""
        counter = self.state_evicted if action == "evicted" else self.state_refused
        counter.labels(part).inc(count)


def _size_of(sizes: Callable[[], dict[str, int]], part: str) -> Callable[[], float]:
    return lambda: float(sizes()[part])


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, then record it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
