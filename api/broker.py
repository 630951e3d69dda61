"""The API's MQTT side: follow the derived topics into the live state and the feed.

The broker is untrusted input: a message too large, not JSON, or not fitting the contract is
rejected, counted by reason and logged (rate-limited), and any error taking one message is
counted too; nothing a message holds stops the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import aiomqtt
import orjson

from api.livestate import LiveState
from pantau.backoff import Backoff
from pantau.derived import ACKS_ALL, MAX_MESSAGE_BYTES, derived_filter
from pantau.settings import Settings
from pantau.tls import client_tls_context, describe_tls_error, is_verify_failure

__all__ = ["BrokerLink", "RejectionLog"]

log = logging.getLogger(__name__)

_YIELD_EVERY = 200
_LOGGED_CHARS: Final = 200
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    """Text from the broker as one short log value: truncated, control characters replaced."""
    short = text[:_LOGGED_CHARS] + ("…" if len(text) > _LOGGED_CHARS else "")
    return _CONTROL.sub("?", short)


class RejectionLog:
    """Logs rejected derived messages, one line each, at most `per_window` lines a window.

    A flood of bad messages then costs a few lines, and the next window's first line says how
    many went unlogged.
    """

    def __init__(
        self,
        per_window: int = 10,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        self._start = -float("inf")
        self._logged = 0
        self._unlogged = 0

    def __call__(self, reason: str, topic: str, detail: str = "") -> None:
        """Log one rejection, unless this window's lines are used up."""
        now = self._clock()
        if now - self._start >= self.window_s:
            if self._unlogged:
                log.warning(
                    "more derived messages were rejected than logged",
                    extra={"unlogged": self._unlogged, "window_s": self.window_s},
                )
            self._start, self._logged, self._unlogged = now, 0, 0
        if self._logged >= self.per_window:
            self._unlogged += 1
            return
        self._logged += 1
        log.warning(
            "derived message rejected",
            extra={"reason": reason, "topic": _printable(topic), "detail": _printable(detail)},
        )


class BrokerLink:
    """Subscribes to the derived topics, reconnecting with jittered backoff; publishes acks."""

    def __init__(
        self,
        settings: Settings,
        state: LiveState,
        on_event: Callable[[dict[str, Any]], None],
        on_message: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.on_event = on_event
        self.on_message = on_message
        self.connected = asyncio.Event()
        # True while run() runs: a link task that died is seen by readiness.
        self.alive = False
        # Messages whose handling failed unexpectedly (not a contract rejection): counted here
        # and as rejections with reason "error".
        self.errors = 0
        self._client: aiomqtt.Client | None = None
        # The alert service's topics (presence, episode acks): filters to follow, a handler
        # that takes a message first and says whether it was one of its own, and a will.
        self.extra_topics: tuple[str, ...] = ()
        self.on_ops: Callable[[str, bytes], bool] | None = None
        self.will: aiomqtt.Will | None = None
        # Each replica needs its own identity: a clean session, all retained state on connect.
        self.client_id = settings.api.client_id or f"pantau-api-{secrets.token_hex(4)}"
        # Built once (and unusable TLS settings refused) before the first connect.
        self._tls_context = client_tls_context(settings)

    async def run(self) -> None:
        """Follow the broker until cancelled."""
        self.alive = True
        try:
            await self._run()
        finally:
            self.alive = False

    async def _run(self) -> None:
        endpoint = self.settings.mqtt.endpoint()
        backoff = Backoff(0.5, self.settings.reconnect_max_s)
        while True:
            try:
                async with aiomqtt.Client(
                    endpoint.host,
                    endpoint.port,
                    username=endpoint.username,
                    password=endpoint.password,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    tls_context=self._tls_context,
                    max_queued_incoming_messages=100_000,
                    will=self.will,
                ) as client:
                    self._client = client
                    topics = (derived_filter(self.settings.api.city), ACKS_ALL, *self.extra_topics)
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    log.info("api connected to broker", extra={"client_id": self.client_id})
                    backoff.reset()
                    taken = 0
                    async for message in client.messages:
                        self._take(str(message.topic), message.payload)
                        taken += 1
                        if taken % _YIELD_EVERY == 0:
                            # A queued burst never suspends the loop by itself: let requests in.
                            await asyncio.sleep(0)
            except aiomqtt.MqttError as exc:
                if is_verify_failure(str(exc)):
                    # Retried like any failure (a renewed certificate recovers), but loudly.
                    log.error(describe_tls_error(str(exc), endpoint.host, endpoint.port))
                else:
                    log.warning("broker connection lost; retrying", extra={"error": str(exc)})
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff.next_delay())

    def _take(self, topic: str, payload: Any) -> None:
        """Take one message; whatever it holds, never raise."""
        try:
            if self.on_message is not None:
                self.on_message()
            if not isinstance(payload, bytes | bytearray):
                self.state.reject("schema", topic, "the payload is not bytes")
                return
            limit = (
                self.settings.api.max_derived_bytes
                if topic.endswith("/readings")
                else MAX_MESSAGE_BYTES
            )
            if len(payload) > limit:
                self.state.reject("too_large", topic, f"{len(payload)} bytes > {limit}")
                return
            if self.on_ops is not None and self.on_ops(topic, bytes(payload)):
                return
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                # Also what orjson says of nesting deeper than it parses.
                self.state.reject("not_json", topic, str(exc))
                return
            for event in self.state.apply(topic, data):
                self.on_event(event)
        except Exception as exc:  # one message's failure must never stop the link
            self.errors += 1
            with contextlib.suppress(Exception):
                self.state.reject("error", topic, type(exc).__name__)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish one message (QoS 1); raises ConnectionError while the broker is away."""
        client = self._client
        if client is None:
            raise ConnectionError("not connected to the MQTT broker")
        await client.publish(topic, orjson.dumps(payload), qos=1)

    async def publish_bytes(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish one message as given (QoS 1); raises ConnectionError while away."""
        client = self._client
        if client is None:
            raise ConnectionError("not connected to the MQTT broker")
        try:
            await client.publish(topic, payload, qos=1, retain=retain)
        except aiomqtt.MqttError as exc:
            raise ConnectionError(str(exc)) from None
