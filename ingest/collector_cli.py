"""`pantau ingest`: run one collector until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click
from pydantic import ValidationError

from ingest.collector import Collector
from ingest.derivation import Derivation
from ingest.metrics import CollectorMetrics
from ingest.partition import Partition
from ingest.spool import Spool
from ingest.state_replay import StateCatchUp, replay_start
from ingest.store import DurableStore
from ingest.workers import plan_workers, supervise
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
    "--share-dispatch",
    type=click.Choice(["round_robin", "hash_topic"]),
    help="How the broker spreads the share group [PANTAU_SHARE_DISPATCH], default round_robin",
)
@click.option(
    "--partition",
    help="K/N: process the districts of partition K of N, one collector per partition "
    "[PANTAU_PARTITION]",
)
@click.option(
    "--catch-all/--no-catch-all",
    default=None,
    help="Partition 1 also takes districts the registry does not list [PANTAU_CATCH_ALL], "
    "default on",
)
@click.option(
    "--processors/--no-processors",
    default=None,
    help="Run detectors and live indicators; --no-processors stores only [PANTAU_PROCESSORS]",
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
@click.option(
    "--workers",
    type=int,
    help="Run N collector processes, one partition each (ports from --metrics-port on) "
    "[PANTAU_WORKERS], default 1",
)
@click.pass_context
def ingest(ctx: click.Context, /, **options: Any) -> None:
    """Collect readings from MQTT into InfluxDB; acknowledge each message once it is stored."""
    try:
        settings = Settings.from_options(**options)
    except ValidationError as exc:
        raise click.ClickException(_settings_error(exc)) from None
    configure_logging(settings.log_level)
    if settings.workers > 1:
        try:
            plans = plan_workers(settings, _given_options(ctx, options), settings.workers)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        ctx.exit(supervise(plans))
    try:
        client_tls_context(settings)  # refuse unusable TLS settings before anything starts
    except TlsConfigError as exc:
        raise click.ClickException(str(exc)) from None
    registry = Registry.from_csv(settings.registry) if settings.registry else None
    if registry is None:
        log.warning("no device registry: development mode, any well-formed device is accepted")
    partition = _partition(settings, registry)
    if settings.share_group and settings.share_dispatch == "hash_topic" and settings.processors:
        log.warning(
            "share group on a topic-hashing broker: each device stays with one replica, but a "
            "district's devices may not; peer drift and district lamp shares see only this "
            "replica's devices (use partition=K/N to keep districts whole)"
        )
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
        snapshot = settings.effective_spool_dir / "processors.npz"
        derivation, catch_up = None, None
        if settings.processors:
            derivation, catch_up = _processors(settings, registry, snapshot, partition, influx)
        Collector(
            settings,
            store,
            registry=registry,
            metrics=metrics,
            derivation=derivation,
            snapshot_path=snapshot if derivation is not None else None,
            partition=partition,
            catch_up=catch_up,
        ).run(stop)


def _given_options(ctx: click.Context, options: dict[str, Any]) -> dict[str, str]:
    """The options given on the command line, flag -> value ("" for a flag), but --workers."""
    given: dict[str, str] = {}
    for param in ctx.command.params:
        value = options.get(param.name or "")
        if value is None or param.name == "workers" or not isinstance(param, click.Option):
            continue
        if param.is_flag and param.secondary_opts:
            given[param.opts[0] if value else param.secondary_opts[0]] = ""
        else:
            given[max(param.opts, key=len)] = str(value)
    return given


def _settings_error(exc: ValidationError) -> str:
    """The reasons of invalid settings, one per line, without pydantic's decoration."""
    lines = ["invalid settings:"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        lines.append(f"  {where}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _partition(settings: Settings, registry: Registry | None) -> Partition | None:
    """The partition of the registry's districts this collector processes, if any."""
    index = settings.partition_index
    if index is None:
        return None
    if registry is None:
        raise click.ClickException(
            "partition needs the device registry: it names the districts to divide"
        )
    try:
        partition = Partition.plan(
            *index,
            settings.topic,
            (d.district for d in registry),
            catch_all=settings.catch_all,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    log.info(
        "partition",
        extra={"partition": partition.layout, "districts": ",".join(sorted(partition.mine))},
    )
    return partition


def _processors(
    settings: Settings,
    registry: Registry | None,
    snapshot: Path,
    partition: Partition | None,
    influx: InfluxClient,
) -> tuple[Derivation, StateCatchUp]:
    """The processors from their snapshot, and what to replay from InfluxDB on top of it.

    A snapshot of another partition layout is set aside: it holds devices this collector no
    longer takes (their silence would read as an outage) and lacks the ones it now does.
    """
    layout = partition.layout if partition is not None else ""
    derivation = Derivation(registry)
    complete = derivation.load(snapshot)
    if complete and derivation.layout != layout:
        log.info(
            "partition layout changed; rebuilding the processors' state from InfluxDB",
            extra={"was": derivation.layout or "none", "now": layout or "none"},
        )
        derivation, complete = Derivation(registry), False
    elif complete:
        log.info("processor state restored", extra={"snapshot": str(snapshot)})
    derivation.layout = layout
    since = replay_start(
        derivation, time.time(), hours=settings.state_replay_hours, complete=complete
    )
    owns = partition.owns_district if partition is not None else (lambda district: True)
    return derivation, StateCatchUp(influx, since, owns)
