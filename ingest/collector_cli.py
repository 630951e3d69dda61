"""`pantau ingest`: run one collector until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from ingest.collector import Collector
from ingest.derivation import Derivation
from ingest.metrics import CollectorMetrics
from ingest.spool import Spool
from ingest.store import DurableStore
from pantau.influx import InfluxClient
from pantau.logs import configure_logging
from pantau.registry import Registry
from pantau.settings import Settings
from pantau.tls import TlsConfigError, client_tls_context

__all__ = ["ingest"]

log = logging.getLogger(__name__)


@click.command()
@click.option(
    "--mqtt", "mqtt_url", help="Broker URL, mqtt://[user:pass@]host:port [PANTAU_MQTT_URL]"
)
@click.option(
    "--mqtt-ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificate(s) that signed the broker's, for mqtts:// [PANTAU_MQTT_CA_FILE]",
)
@click.option(
    "--mqtt-cert-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate for mqtts:// [PANTAU_MQTT_CERT_FILE]",
)
@click.option(
    "--mqtt-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate's key [PANTAU_MQTT_KEY_FILE]",
)
@click.option("--influx", "influx_url", help="InfluxDB URL, http://host:port [PANTAU_INFLUX_URL]")
@click.option("--db", "influx_db", help="InfluxDB database [PANTAU_INFLUX_DB]")
@click.option("--topic", help="Topic filter [PANTAU_TOPIC], default city/+/+/+/+")
@click.option(
    "--registry",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Device registry CSV; without it any well-formed device is accepted [PANTAU_REGISTRY]",
)
@click.option("--client-id", help="Stable MQTT client id of this collector [PANTAU_CLIENT_ID]")
@click.option(
    "--share-group",
    help="Join this MQTT v5 shared-subscription group ($share/GROUP/...) [PANTAU_SHARE_GROUP]",
)
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Local spool folder [PANTAU_SPOOL_DIR], default .pantau/spool/<client id>",
)
@click.option("--spool-max-bytes", type=int, help="Spool size bound [PANTAU_SPOOL_MAX_BYTES]")
@click.option("--batch-size", type=int, help="Readings per write [PANTAU_BATCH_SIZE], default 5000")
@click.option(
    "--batch-interval",
    "batch_interval_s",
    type=float,
    help="Seconds before a part-filled batch is written [PANTAU_BATCH_INTERVAL_S], default 0.2",
)
@click.option(
    "--metrics-port", type=int, help="Serve Prometheus /metrics on this port [PANTAU_METRICS_PORT]"
)
def ingest(**options: Any) -> None:
    """Collect readings from MQTT into InfluxDB; acknowledge each message once it is stored."""
    settings = Settings.from_options(**options)
    configure_logging(settings.log_level)
    try:
        client_tls_context(settings)  # refuse unusable TLS settings before anything starts
    except TlsConfigError as exc:
        raise click.ClickException(str(exc)) from None
    registry = Registry.from_csv(settings.registry) if settings.registry else None
    if registry is None:
        log.warning("no device registry: development mode, any well-formed device is accepted")
    metrics = CollectorMetrics()
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        # Not stop.set() here: the handler runs on the main thread, which may be inside
        # stop.wait() holding the event's (non-reentrant) lock; setting it from here would
        # deadlock. A short-lived thread sets it once the main thread lets go.
        threading.Thread(target=stop.set, name="stop", daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with (
        InfluxClient(
            settings.influx.url,
            settings.influx.db,
            username=settings.influx.username,
            password=settings.influx.password.get_secret_value()
            if settings.influx.password
            else None,
            token=settings.influx.token.get_secret_value() if settings.influx.token else None,
            timeout_s=settings.influx.timeout_s,
        ) as influx,
        Spool(
            settings.effective_spool_dir,
            max_bytes=settings.spool.max_bytes,
            segment_bytes=settings.spool.segment_bytes,
        ) as spool,
    ):
        endpoint = settings.mqtt.endpoint()
        log.info(
            "starting collector",
            extra={
                "mqtt": f"{endpoint.host}:{endpoint.port}",
                "tls": endpoint.tls,
                "influx": settings.influx.url,
                "db": settings.influx.db,
                "registry": str(settings.registry or ""),
                "spool": str(settings.effective_spool_dir),
            },
        )
        influx.create_database()
        store = DurableStore(
            influx,
            spool,
            metrics,
            collector_id=settings.client_id,
            rejected_payload_bytes=settings.rejected_payload_bytes,
        )
        derivation = Derivation(registry)
        snapshot = settings.effective_spool_dir / "processors.npz"
        if derivation.load(snapshot):
            log.info("processor state restored", extra={"snapshot": str(snapshot)})
        Collector(
            settings,
            store,
            registry=registry,
            metrics=metrics,
            derivation=derivation,
            snapshot_path=snapshot,
        ).run(stop)
