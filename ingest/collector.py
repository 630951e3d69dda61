"""The MQTT collector: receive, batch, write to InfluxDB, then acknowledge (QoS 1, MQTT v5)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.batch import Batch, BatchBuilder, Limits
from ingest.influx import InfluxClient, InfluxClientError, InfluxUnavailableError
from ingest.lineprotocol import encode_readings, encode_rejections
from ingest.metrics import CollectorMetrics
from ingest.registry import Registry
from ingest.rejections import Reason, Rejection
from ingest.settings import Settings, mqtt_endpoint

__all__ = ["Collector"]

log = logging.getLogger(__name__)

_IDLE_WAIT_S: Final = 0.01  # how often a part-filled batch checks its age
_RETRY_MAX_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection the message arrived on; a packet id is only valid there


class Collector:
    """One collector process: a persistent MQTT v5 session feeding batched InfluxDB writes.

    A message is acknowledged only after every reading in it (and every rejection record) is
    written, so a crash or an InfluxDB outage leaves it with the broker, which delivers it again.
    """

    def __init__(
        self,
        settings: Settings,
        influx: InfluxClient,
        *,
        registry: Registry | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._influx = influx
        self._metrics = metrics or CollectorMetrics()
        self._builder = BatchBuilder(
            Limits(
                max_payload_bytes=settings.max_payload_bytes,
                max_readings_per_message=settings.max_readings_per_message,
                clock_skew_s=settings.clock_skew_s,
                max_age_s=settings.max_age_days * 86400.0,
                rejected_payload_bytes=settings.rejected_payload_bytes,
            ),
            registry,
        )
        self._inbox: collections.deque[_Received] = collections.deque()
        self._pending: list[_Received] = []  # taken into the current batch, not yet acked
        self._batch_started = 0.0
        self._generation = 0
        self._taking = threading.Event()
        self._taking.set()
        self._connected = threading.Event()
        self._next_rejection_ns = 0
        self._client = self._make_client()

    @property
    def metrics(self) -> CollectorMetrics:
        """Metrics of this collector."""
        return self._metrics

    @property
    def connected(self) -> threading.Event:
        """Set while the MQTT session is up."""
        return self._connected

    # -- MQTT ------------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        endpoint = mqtt_endpoint(self._settings.mqtt_url)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        # Mosquitto allows only 20 unacknowledged messages in flight unless told more; the
        # batch needs room for all the messages it holds until the write is durable.
        props.ReceiveMaximum = self._settings.effective_receive_maximum
        return props

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused connection", extra={"reason": str(reason)})
            return
        self._generation += 1
        # Re-subscribing an identical filter replaces the session's subscription, never doubles it.
        client.subscribe(self._settings.topic, qos=1)
        self._connected.set()
        log.info(
            "connected to broker",
            extra={
                "client_id": self._settings.client_id,
                "session_present": flags.session_present,
                "topic": self._settings.topic,
            },
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if self._taking.is_set():
            log.warning("disconnected from broker; reconnecting", extra={"reason": str(reason)})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Runs on paho's network thread: only hand the message over. Once draining, messages
        # are left unacknowledged; the broker keeps them in the session for the next start.
        if self._taking.is_set():
            self._inbox.append(
                _Received(
                    message.topic,
                    bytes(message.payload),
                    message.mid,
                    message.qos,
                    self._generation,
                )
            )

    # -- the batch loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Collect until `stop` is set, then drain: stop taking, flush, acknowledge, disconnect."""
        endpoint = mqtt_endpoint(self._settings.mqtt_url)
        self._influx.create_database()
        self._client.connect_async(
            endpoint.host,
            endpoint.port,
            keepalive=30,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._client.loop_start()
        try:
            while not stop.is_set():
                self._take()
                if self._batch_due():
                    self._flush(deadline=None, stop=stop)
                elif not self._inbox:
                    stop.wait(_IDLE_WAIT_S)
        finally:
            self._drain()

    def _take(self) -> None:
        inbox, pending, builder = self._inbox, self._pending, self._builder
        limit = self._settings.batch_size
        taken = 0
        while inbox and builder.readings < limit and builder.messages < limit:
            received = inbox.popleft()
            if not pending:
                self._batch_started = time.monotonic()
            pending.append(received)
            builder.add(received.topic, received.payload)
            taken += 1
        if taken:
            self._metrics.messages_received.inc(taken)
        self._metrics.unacked_messages.set(len(pending) + len(inbox))

    def _batch_due(self) -> bool:
        if not self._pending:
            return False
        limit = self._settings.batch_size
        if self._builder.readings >= limit or self._builder.messages >= limit:
            return True
        return time.monotonic() - self._batch_started >= self._settings.batch_interval_s

    def _drain(self) -> None:
        self._taking.clear()
        deadline = time.monotonic() + self._settings.shutdown_timeout_s
        log.info("draining", extra={"pending": len(self._pending) + len(self._inbox)})
        try:
            while self._pending or self._inbox:
                self._take()
                if not self._flush(deadline=deadline, stop=None):
                    log.warning(
                        "shutdown deadline reached; unwritten messages stay with the broker",
                        extra={"unacked": len(self._pending) + len(self._inbox)},
                    )
                    break
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            log.info("stopped")

    def _flush(self, *, deadline: float | None, stop: threading.Event | None) -> bool:
        """Write the current batch and acknowledge it; False if it could not be made durable."""
        batch = self._builder.build()
        body = self._encode(batch)
        if body and not self._write(body, deadline=deadline, stop=stop):
            # Not durable: keep the acks back. The broker redelivers these messages.
            self._pending.clear()
            return False
        for kind, columns in batch.columns.items():
            self._metrics.readings_written.labels(kind).inc(len(columns))
            if len(columns):
                lag = time.time() - float(columns.ts_ns.max()) / 1e9
                self._metrics.lag_seconds.set(lag)
        for rejection in batch.rejections:
            self._metrics.rejected.labels(rejection.reason.value).inc()
        self._ack(self._pending)
        self._pending = []
        return True

    def _encode(self, batch: Batch) -> bytes:
        parts = [encode_readings(columns) for columns in batch.columns.values()]
        if batch.rejections:
            parts.append(self._encode_rejections(batch.rejections))
        return "\n".join(p for p in parts if p).encode()

    def _encode_rejections(self, rejections: list[Rejection]) -> str:
        first = max(time.time_ns(), self._next_rejection_ns)
        text, self._next_rejection_ns = encode_rejections(
            rejections, collector=self._settings.client_id, first_ns=first
        )
        for rejection in rejections:
            log.info(
                "rejected",
                extra={
                    "reason": rejection.reason.value,
                    "topic": rejection.topic,
                    "index": rejection.index,
                    "detail": rejection.detail,
                },
            )
        return text

    def _write(
        self,
        body: bytes,
        *,
        deadline: float | None,
        stop: threading.Event | None,
        record_refusal: bool = True,
    ) -> bool:
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                self._influx.write(body, precision="n")
            except InfluxUnavailableError as exc:
                self._metrics.influx_errors.labels("unavailable").inc()
                log.warning("InfluxDB unavailable; retrying", extra={"error": str(exc)})
                if exc.database_missing:
                    self._influx.create_database()
            except InfluxClientError as exc:
                # Retrying the same body cannot help. InfluxDB 1.x stores the valid points of a
                # partial write; keep its explanation as a rejection so nothing vanishes silently.
                self._metrics.influx_errors.labels("client").inc()
                log.error("InfluxDB refused the batch", extra={"error": exc.message})
                if not record_refusal:
                    return True  # the refusal record itself was refused: the log keeps it
                return self._record_refusal(exc, deadline=deadline, stop=stop)
            else:
                self._metrics.batch_write_seconds.observe(time.perf_counter() - started)
                return True
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            if stop is not None and stop.wait(delay):
                return False
            if stop is None:
                time.sleep(delay)
            delay = min(_RETRY_MAX_S, delay * 2)

    def _record_refusal(
        self, exc: InfluxClientError, *, deadline: float | None, stop: threading.Event | None
    ) -> bool:
        refusal = Rejection(
            reason=Reason.INFLUX_REJECTED,
            detail=exc.message,
            topic="",
            payload=b"",
        )
        self._metrics.rejected.labels(Reason.INFLUX_REJECTED.value).inc()
        body = self._encode_rejections([refusal]).encode()
        return self._write(body, deadline=deadline, stop=stop, record_refusal=False)

    def _ack(self, received: list[_Received]) -> None:
        generation = self._generation
        acked = 0
        for message in received:
            # A message from an earlier connection is redelivered by the broker under the same
            # packet id; acking the stale copy could acknowledge a newer message instead.
            if message.qos > 0 and message.generation == generation:
                self._client.ack(message.mid, message.qos)
                acked += 1
        self._metrics.messages_acked.inc(acked)
        self._metrics.unacked_messages.set(len(self._inbox))
