"""The MQTT collector: receive, batch, make durable (InfluxDB or spool), then acknowledge."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.batch import Batch, BatchBuilder, Limits
from ingest.derivation import Derivation, Derived
from ingest.metrics import CollectorMetrics
from ingest.mqtt_client import CollectorClient
from ingest.partition import Partition
from ingest.rejections import bounded
from ingest.state_replay import StateCatchUp, replay_stored
from ingest.store import DurableStore
from ingest.write_behind import WriteBehind
from pantau.backoff import Backoff
from pantau.registry import Registry
from pantau.settings import Settings
from pantau.tls import client_tls_context

__all__ = ["Collector"]

_DERIVED_INFLIGHT: Final = 1000
_DERIVED_QUEUED: Final = 100_000

log = logging.getLogger(__name__)

_IDLE_WAIT_S: Final = 0.01  # how often a part-filled batch checks its age
_SWEEP_S: Final = 10.0  # how often silent devices are looked for
# Readings this far behind the wall clock mean a backlog is being replayed (after an outage,
# or a fleet catching up): devices are not silent then, their readings are still queued.
_BACKLOG_S: Final = 300.0
_SNAPSHOT_S: Final = 60.0  # how often the processors' state is saved
_REFUSAL_LOG_S: Final = 60.0  # at most one "broker refused a publish" warning this often
# QoS 0 messages have no flow control (Receive Maximum counts QoS 1 and 2 only): beyond this
# many messages waiting in the inbox, a QoS 0 message is dropped and counted.
_QOS0_INBOX_MAX: Final = 50_000


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection the message arrived on; a packet id is only valid there
    retain: bool = False  # a retained message (the flag as the publisher set it)


class Collector:
    """One collector: a persistent MQTT v5 session feeding batched, durable writes.

    A message is acknowledged only after every reading in it (and every rejection record) is in
    InfluxDB or fsynced to the local spool. A crash, a broker restart or a full spool leaves the
    unacknowledged messages with the broker, which delivers them again.
    """

    def __init__(
        self,
        settings: Settings,
        store: DurableStore,
        *,
        registry: Registry | None = None,
        metrics: CollectorMetrics | None = None,
        derivation: Derivation | None = None,
        snapshot_path: Path | None = None,
        partition: Partition | None = None,
        catch_up: StateCatchUp | None = None,
    ) -> None:
        self._settings = settings
        self._partition = partition
        self._catch_up = catch_up
        # Set when the processors ran on a batch that then failed to become durable: their
        # state is ahead of what is stored, so it is never saved (the last snapshot, plus the
        # stored readings replayed at the next start, is the truth).
        self._state_ahead = False
        self._write_failed = False  # a batch that could not be made durable (while stopping)
        self._writer: WriteBehind | None = None  # runs the writes; started by run()
        self._replayed = 0  # spool records the last replay moved to InfluxDB
        self._derivation = derivation
        self._snapshot_path = snapshot_path
        self._next_sweep = time.monotonic() + _SWEEP_S
        self._newest_since_sweep: float | None = None  # newest observation time since the sweep
        self._next_snapshot = time.monotonic() + _SNAPSHOT_S
        self._store = store
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
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._backoff = Backoff(0.5, settings.reconnect_max_s)
        self._next_refusal_log = 0.0
        self._next_drop_log = 0.0
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

    def _make_client(self) -> CollectorClient:
        endpoint = self._settings.mqtt.endpoint()
        client = CollectorClient(
            CallbackAPIVersion.VERSION2,
            client_id=self._settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.backoff = self._backoff
        client.closing = self._closing
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password)
        tls_context = client_tls_context(self._settings)
        if tls_context is not None:
            client.tls_set_context(tls_context)
        # paho keeps only 20 of its own QoS 1 publishes in flight by default: derived messages
        # (one summary per device per batch) would queue behind the acks of that window.
        client.max_inflight_messages_set(_DERIVED_INFLIGHT)
        # Derived messages are rebuilt from InfluxDB if need be; never let them eat memory.
        client.max_queued_messages_set(_DERIVED_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish_fast = self._on_publish_fast
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    @property
    def filters(self) -> list[str]:
        """The subscription filters: the topic, a partition's districts, or the share group's."""
        if self._partition is not None:
            return list(self._partition.filters)
        return [self._settings.subscription]

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        # Mosquitto allows only 20 unacknowledged messages in flight unless told more; the
        # batch needs room for all the messages it holds until they are durable.
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
        if self._generation > 1:
            self._metrics.mqtt_reconnects.inc()
        self._backoff.reset()
        # Re-subscribing an identical filter replaces the session's subscription, never doubles it.
        options = self._subscribe_options()
        filters = self.filters
        if filters:
            client.subscribe([(f, options) for f in filters])
        else:
            log.warning("this partition has no districts in the registry; nothing to subscribe")
        self._connected.set()
        self._metrics.mqtt_connected.set(1)
        log.info(
            "connected to broker",
            extra={
                "client_id": self._settings.client_id,
                "session_present": flags.session_present,
                "subscription": ",".join(filters),
            },
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        # The SUBACK: from here on the broker routes (and queues) readings to this session.
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused the subscription", extra={"reasons": ",".join(refused)})
        else:
            granted = ",".join(str(r.value) for r in reasons)
            log.info("subscribed", extra={"granted": granted})

    def _subscribe_options(self) -> SubscribeOptions:
        """QoS 1, and the options that let retained readings be taken once and then cleared.

        Devices may publish readings retained (Mosquitto's ACLs cannot refuse the flag), and the
        broker would hand each one out again at every subscribe: every reconnect re-rejected it.
        - retainAsPublished: live messages keep the publisher's retain flag, so the collector
          sees which readings were retained and clears them once they are durable.
        - retainHandling=1: retained messages come only with a new subscription (a fresh
          session), not with the re-subscribe of a resumed one; anything retained while the
          session was away arrives queued, once, with its flag.
        - noLocal: the collector's own clears (empty retained publishes on the data topics) do
          not come back to it. MQTT v5 forbids noLocal on a shared subscription, so replicas
          get each other's clears; those, like any zero-length retained message, are retained
          deletions, acknowledged without a record (see _take).
        """
        return SubscribeOptions(
            qos=1,
            noLocal=not self._settings.subscription.startswith("$share/"),
            retainAsPublished=True,
            retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
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
        self._metrics.mqtt_connected.set(0)
        if not self._closing.is_set():
            log.warning("broker connection lost; reconnecting", extra={"reason": str(reason)})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho's own path: a PUBLISH with properties (mqtt_client.py takes the others).
        topic = message._topic  # bytes; .topic raises on invalid UTF-8
        self._on_publish_fast(
            topic, bytes(message.payload), message.mid, message.qos, bool(message.retain)
        )

    def _on_publish_fast(
        self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool
    ) -> None:
        # Runs on the network thread: only hand the message over. Once draining, messages are
        # left unacknowledged; the broker keeps them in the session for the next start.
        # QoS 0 messages have neither redelivery nor flow control: dropped ones are counted.
        # An invalid UTF-8 topic keeps its replacement characters, which no topic segment
        # allows: it is rejected with its reason.
        if qos == 0 and (not self._taking.is_set() or len(self._inbox) >= _QOS0_INBOX_MAX):
            self._metrics.qos0_dropped.inc()
            return
        if self._taking.is_set():
            self._inbox.append(
                _Received(
                    topic.decode("utf-8", errors="replace"),
                    payload,
                    mid,
                    qos,
                    self._generation,
                    retain,
                )
            )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        # Runs on the network thread. A refused publish (a derived message, or the clear of a
        # retained reading) is an ACL that does not match this collector's role: say so,
        # without a line per message.
        if not reason.is_failure:
            return
        self._metrics.publishes_refused.inc()
        now = time.monotonic()
        if now >= self._next_refusal_log:
            self._next_refusal_log = now + _REFUSAL_LOG_S
            log.warning(
                "broker refused a publish; check this collector's ACL",
                extra={"reason": str(reason)},
            )

    # -- the batch loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Collect until `stop` is set, then drain: stop taking, flush, acknowledge, disconnect."""
        endpoint = self._settings.mqtt.endpoint()
        self._store.replay(budget_s=0.0, force_probe=True)  # learn InfluxDB's state at once
        self._catch_up_state(stop)
        self._client.connect_async(
            endpoint.host,
            endpoint.port,
            keepalive=30,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._client.loop_start()
        # The writes run behind the batch loop: while one batch goes to InfluxDB, the next is
        # decoded and processed. Every store operation runs on this one thread, in order.
        writer = self._writer = WriteBehind("pantau-writer")
        try:
            while not stop.is_set():
                self._take()
                worked = False
                if self._batch_due():
                    self._flush(stop=stop, deadline=None)
                    worked = True
                if self._store.spool and writer.idle:
                    # The spool drains between batches, oldest first.
                    worked = self._replayed > 0
                    writer.submit(self._replay_spool)
                self._housekeeping(stop)
                if not worked and not self._inbox:
                    stop.wait(_IDLE_WAIT_S)
        finally:
            self._drain()

    def _replay_spool(self) -> None:
        self._replayed = self._store.replay()

    def _catch_up_state(self, stop: threading.Event) -> None:
        """Replay stored readings newer than the processors' state, before any live batch.

        The spool is drained first where InfluxDB allows (its readings are part of the durable
        stream). What the replay derives is not stored or published again: every stored reading
        went into InfluxDB (or the spool) in the same write as its anomalies and indicators.
        Re-reporting them would also cut anomaly episodes at the replay's start.
        """
        catch_up = self._catch_up
        if catch_up is None or self._derivation is None:
            return
        drain_until = time.monotonic() + catch_up.spool_budget_s
        while self._store.spool and time.monotonic() < drain_until and not stop.is_set():
            if not self._store.replay(budget_s=1.0, force_probe=True):
                break
        if self._store.spool:
            log.warning(
                "spooled readings are not yet in InfluxDB; the processors start without them"
            )
        try:
            fed = replay_stored(
                self._derivation,
                catch_up.influx,
                since=catch_up.since,
                until=time.time() + self._settings.clock_skew_s,
                owns=catch_up.owns,
            )
        except Exception as exc:  # InfluxDB away or answering nonsense: go on without
            log.warning(
                "could not replay stored readings into the processors; they go on from "
                "their snapshot",
                extra={"error": bounded(str(exc))},
            )
            return
        self._metrics.state_replayed.inc(fed)

    def _take(self) -> None:
        inbox, pending, builder = self._inbox, self._pending, self._builder
        partition = self._partition
        limit = self._settings.batch_size
        taken = 0
        while inbox and builder.readings < limit and builder.messages < limit:
            received = inbox.popleft()
            if not pending:
                self._batch_started = time.monotonic()
            pending.append(received)
            taken += 1
            if partition is not None and not partition.owns(received.topic):
                self._metrics.partition_skipped.inc()  # acknowledged with the batch
                continue
            if received.retain and not received.payload:
                # A zero-length retained message deletes a retained one; it carries no reading.
                # Mostly the echo of a clear (another replica's, or ours without noLocal).
                self._metrics.retained_deletions.inc()
                continue
            builder.add(received.topic, received.payload)
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
            while (self._pending or self._inbox) and not self._write_failed:
                self._take()
                self._flush(stop=None, deadline=deadline)
            if self._writer is not None:
                self._writer.join()
            if self._write_failed:
                log.warning(
                    "shutdown deadline reached; unacknowledged messages stay with the broker",
                    extra={"unacked": len(self._pending) + len(self._inbox)},
                )
        finally:
            lost = sum(1 for m in self._inbox if m.qos == 0)
            if lost:
                self._metrics.qos0_dropped.inc(lost)
            self._save_snapshot()
            if self._writer is not None:
                self._writer.close()
            self._closing.set()
            self._client.disconnect()
            self._client.loop_stop()
            log.info("stopped")

    def _housekeeping(self, stop: threading.Event) -> None:
        """The periodic silence sweep and processor snapshot."""
        now = time.monotonic()
        if self._derivation is not None and now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_S
            newest, self._newest_since_sweep = self._newest_since_sweep, None
            catching_up = newest is not None and time.time() - newest > _BACKLOG_S
            # A total outage (no readings at all) is still swept: every device then is silent.
            derived = self._derivation.sweep(time.time(), silence=not catching_up)
            if derived.lines:
                self._submit(partial(self._write_sweep, derived, stop))
            elif derived.live or derived.messages:  # held-back readings: nothing to store first
                self._publish(derived)
        if now >= self._next_snapshot:
            self._next_snapshot = now + _SNAPSHOT_S
            self._save_snapshot()

    def _write_sweep(self, derived: Derived, stop: threading.Event) -> None:
        body = "\n".join(derived.lines).encode()
        if self._store.persist(body, 0, stop=stop):
            self._publish(derived)
        else:  # stopping: the silences were noted but not stored
            self._state_ahead = True

    def _submit(self, job: partial[None]) -> None:
        """Run a store operation on the writer (inline when the batch loop is not running)."""
        if self._writer is None:
            job()
        else:
            self._writer.submit(job)

    def _save_snapshot(self) -> None:
        if self._derivation is None or self._snapshot_path is None:
            return
        # Only state that matches what is durable is saved: the writes of every batch the
        # processors have seen must be done first.
        if self._writer is not None:
            try:
                self._writer.join()
            except RuntimeError:  # a write raised: the batch loop stops with it
                self._state_ahead = True
        if self._state_ahead:
            return
        try:
            self._derivation.save(self._snapshot_path)
        except OSError as exc:
            log.warning("could not save the processor snapshot", extra={"error": str(exc)})

    def _derive(self, batch: Batch) -> Derived:
        if self._derivation is None:
            return Derived()
        newest = max((int(c.ts_ns.max()) for c in batch.columns.values() if len(c)), default=None)
        if newest is not None:
            seen = self._newest_since_sweep
            self._newest_since_sweep = max(newest / 1e9, seen if seen is not None else -1.0)
        try:
            return self._derivation.process(batch)
        except Exception:
            # A processor bug must never cost a reading: store the batch without derived data.
            log.exception("processors failed on a batch; readings are stored without them")
            self._metrics.processor_errors.inc()
            return Derived()

    def _publish(self, derived: Derived, *, live: bool = True) -> None:
        """Hand derived messages to the broker: the live ones (if `live`), then the events."""
        dropped = 0
        for message in (*derived.live, *derived.messages) if live else derived.messages:
            info = self._client.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain
            )
            # QoS 1 messages wait in paho's queue while the session is down; beyond the queue
            # bound, and QoS 0 messages without a session, are not sent at all.
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE or (
                info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and message.qos == 0
            ):
                dropped += 1
        if dropped:
            self._metrics.derived_dropped.inc(dropped)
            now = time.monotonic()
            if now >= self._next_drop_log:
                self._next_drop_log = now + _REFUSAL_LOG_S
                log.warning(
                    "derived messages dropped (broker away or the publish queue full)",
                    extra={"dropped": dropped},
                )
        self._metrics.anomalies.inc(derived.anomalies)

    def _flush(self, *, stop: threading.Event | None, deadline: float | None) -> None:
        """Process the current batch and hand it to the writer, which makes it durable and acks."""
        batch = self._builder.build()
        readings = batch.readings
        self._metrics.readings_received.inc(
            readings + sum(1 for r in batch.rejections if r.index >= 0)
        )
        derived = self._derive(batch)
        # The live feed need not wait for the write: a reading shown before it is durable is
        # redelivered and stored if the write fails. Anomalies and indicators wait for it.
        self._publish(Derived(live=derived.live), live=True)
        body = self._encode(batch, derived.lines)
        received, self._pending = self._pending, []
        self._submit(partial(self._write, batch, body, received, derived, stop, deadline))

    def _write(
        self,
        batch: Batch,
        body: bytes,
        received: list[_Received],
        derived: Derived,
        stop: threading.Event | None,
        deadline: float | None,
    ) -> None:
        """Make one batch durable, then acknowledge its messages and publish its events."""
        where = (
            self._store.persist(body, batch.readings, stop=stop, deadline=deadline) if body else ""
        )
        if body and not where:
            # Not durable: hold the acks back. The broker delivers these messages again after
            # the session resumes (the process is stopping when this happens). The processors
            # have seen the batch: their state must not be saved from here on.
            self._state_ahead = self._derivation is not None
            self._write_failed = True
            return
        for kind, columns in batch.columns.items():
            if where == "influx":  # spooled readings count when replayed
                self._metrics.readings_written.labels(kind).inc(len(columns))
            if len(columns):
                self._metrics.lag_seconds.set(time.time() - float(columns.ts_ns.max()) / 1e9)
        for rejection in batch.rejections:
            self._metrics.rejected.labels(rejection.reason.value).inc()
        self._ack(received)
        self._clear_retained(received)
        self._publish(derived, live=False)

    def _clear_retained(self, received: list[_Received]) -> None:
        """Delete the retained copies of readings that are now durable (stored or rejected).

        A zero-length retained publish removes the broker's copy, so no later subscription gets
        the reading (or its rejection) again. Only after the batch is durable: the reading was
        taken from the message, and cleared before then it could be lost.
        """
        topics = dict.fromkeys(m.topic for m in received if m.retain and m.payload)
        for topic in topics:
            try:
                self._client.publish(topic, b"", qos=1, retain=True)
            except ValueError as exc:  # a topic paho will not publish to; nothing to clear
                log.warning("cannot clear a retained message", extra={"error": bounded(str(exc))})
                continue
            self._metrics.retained_cleared.inc()

    def _encode(self, batch: Batch, derived_lines: list[str]) -> bytes:
        parts = [columns.line_protocol() for columns in batch.columns.values()]
        parts += derived_lines
        if batch.rejections:
            parts.append(self._store.encode_rejections(batch.rejections))
            for rejection in batch.rejections:
                log.info(
                    "rejected",
                    extra={
                        "reason": rejection.reason.value,
                        "topic": rejection.topic,  # both bounded by Rejection itself
                        "index": rejection.index,
                        "detail": rejection.detail,
                    },
                )
        # backslashreplace: a lone surrogate smuggled in through a JSON escape must not crash us.
        return "\n".join(p for p in parts if p).encode("utf-8", errors="backslashreplace")

    def _ack(self, received: list[_Received]) -> None:
        generation = self._generation
        # A message from an earlier connection is redelivered by the broker under the same
        # packet id; acking the stale copy could acknowledge a newer message instead.
        mids = [m.mid for m in received if m.qos == 1 and m.generation == generation]
        self._client.ack_many(mids)
        self._metrics.messages_acked.inc(len(mids))
        self._metrics.unacked_messages.set(len(self._inbox))
