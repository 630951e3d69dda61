"""Prometheus metrics of one collector, in a registry of its own (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ingest.rejections import Reason

__all__ = ["CollectorMetrics"]


class CollectorMetrics:
    """What flows through a collector: received, written, rejected, unacknowledged, latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_received = Counter(
            "pantau_messages_received", "MQTT messages received", registry=r
        )
        self.messages_acked = Counter(
            "pantau_messages_acked", "MQTT messages acknowledged after a durable write", registry=r
        )
        self.readings_written = Counter(
            "pantau_readings_written",
            "Readings written to InfluxDB directly (replays: pantau_readings_replayed)",
            ["kind"],
            registry=r,
        )
        self.rejected = Counter(
            "pantau_rejected",
            "Rejected messages or readings, by reason",
            ["reason"],
            registry=r,
        )
        self.influx_errors = Counter(
            "pantau_influx_errors",
            "Failed InfluxDB writes (unavailable: retried; client: refused)",
            ["type"],
            registry=r,
        )
        self.unacked_messages = Gauge(
            "pantau_unacked_messages", "Messages received and not yet acknowledged", registry=r
        )
        self.batch_write_seconds = Histogram(
            "pantau_batch_write_seconds",
            "Time to write one batch to InfluxDB",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.readings_received = Counter(
            "pantau_readings_received", "Readings received (good and rejected)", registry=r
        )
        self.readings_spooled = Counter(
            "pantau_readings_spooled", "Readings fsynced to the local spool", registry=r
        )
        self.batches_spooled = Counter(
            "pantau_batches_spooled", "Batches fsynced to the local spool", registry=r
        )
        self.readings_replayed = Counter(
            "pantau_readings_replayed", "Spooled readings written to InfluxDB", registry=r
        )
        self.batches_replayed = Counter(
            "pantau_batches_replayed", "Spooled batches written to InfluxDB", registry=r
        )
        self.spool_bytes = Gauge("pantau_spool_bytes", "Bytes held in the spool", registry=r)
        self.spool_readings = Gauge(
            "pantau_spool_readings", "Readings waiting in the spool", registry=r
        )
        self.spool_full = Gauge(
            "pantau_spool_full",
            "1 while the spool is full and acknowledgements are held back",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "pantau_mqtt_connected", "1 while the broker session is up", registry=r
        )
        self.mqtt_reconnects = Counter(
            "pantau_mqtt_reconnects", "Broker sessions resumed after a lost connection", registry=r
        )
        self.anomalies = Counter(
            "pantau_anomalies", "Anomalies found by the processors", registry=r
        )
        self.processor_errors = Counter(
            "pantau_processor_errors",
            "Batches the processors failed on (stored anyway)",
            registry=r,
        )
        self.retained_cleared = Counter(
            "pantau_retained_cleared",
            "Retained messages on data topics cleared once their readings were durable",
            registry=r,
        )
        self.retained_deletions = Counter(
            "pantau_retained_deletions",
            "Zero-length retained messages (deletions, e.g. the echo of a clear), not recorded",
            registry=r,
        )
        self.publishes_refused = Counter(
            "pantau_publishes_refused",
            "Publishes (derived messages, retained clears) the broker refused",
            registry=r,
        )
        self.derived_dropped = Counter(
            "pantau_derived_dropped",
            "Derived messages (live readings, anomalies, indicators) not handed to the broker: "
            "the client's queue was full, or the session was down for a QoS 0 message",
            registry=r,
        )
        self.qos0_dropped = Counter(
            "pantau_qos0_dropped",
            "QoS 0 messages dropped unread: the inbox held its bound, or the collector was "
            "draining (QoS 0 has no redelivery)",
            registry=r,
        )
        self.partition_skipped = Counter(
            "pantau_partition_skipped",
            "Messages of another partition's districts, acknowledged without storing (that "
            "partition receives its own copy)",
            registry=r,
        )
        self.state_replayed = Counter(
            "pantau_state_replayed_readings",
            "Stored readings fed to the processors at start to bring their state up to what "
            "InfluxDB holds (after a crash, or for devices new to this collector)",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "pantau_lag_seconds",
            "Age of the newest reading of the last batch at write time",
            registry=r,
        )
        for reason in Reason:  # export zeros, so a dashboard sees every reason from the start
            self.rejected.labels(reason.value)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve /metrics on host:port in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
