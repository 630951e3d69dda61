"""The API's MQTT side: follow the derived topics into the live state and the feed."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import aiomqtt
import orjson

from api.livestate import LiveState
from pantau.backoff import Backoff
from pantau.derived import ACKS_ALL, derived_filter
from pantau.settings import Settings, mqtt_endpoint
from pantau.tls import client_tls_context, describe_tls_error, is_verify_failure

__all__ = ["BrokerLink"]

log = logging.getLogger(__name__)

# A batch summary holds up to a batch's devices (5,000 by default, ~150 bytes each).
_MAX_PAYLOAD = 16 * 1024 * 1024
_YIELD_EVERY = 200


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
        self._client: aiomqtt.Client | None = None
        # Each replica needs its own identity: a clean session, all retained state on connect.
        self.client_id = settings.api.client_id or f"pantau-api-{secrets.token_hex(4)}"
        # Built once (and unusable TLS settings refused) before the first connect.
        self._tls_context = client_tls_context(settings)

    async def run(self) -> None:
        """Follow the broker until cancelled."""
        endpoint = mqtt_endpoint(self.settings.mqtt.url)
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
                ) as client:
                    self._client = client
                    for topic in (derived_filter(self.settings.api.city), ACKS_ALL):
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
        if self.on_message is not None:
            self.on_message()
        if not isinstance(payload, bytes | bytearray) or len(payload) > _MAX_PAYLOAD:
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("undecodable derived message", extra={"topic": topic[:200]})
            return
        if not isinstance(data, dict):
            return
        for event in self.state.apply(topic, data):
            self.on_event(event)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish one message (QoS 1); raises ConnectionError while the broker is away."""
        client = self._client
        if client is None:
            raise ConnectionError("not connected to the MQTT broker")
        await client.publish(topic, orjson.dumps(payload), qos=1)
