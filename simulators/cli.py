"""`pantau simulate` and `pantau replay`: device fleets and recorded data over MQTT."""

from __future__ import annotations

import logging
import math
import re
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final

import click

from pantau.logs import configure_logging
from pantau.registry import Registry
from pantau.settings import Settings
from pantau.tls import TlsConfigError, client_tls_context
from simulators.clock import VirtualClock
from simulators.engine import FleetSimulator
from simulators.faults import FaultEvent, write_ground_truth
from simulators.fleet import purbalingga_fleet, with_interval
from simulators.formats import FORMATS
from simulators.injector import FaultRates, parse_fault_spec
from simulators.load import LoadPlan, run_load
from simulators.replay import DeviceNaming, replay_file
from simulators.runner import RunResult, run
from simulators.transport import (
    DeviceCredentials,
    MqttPublisher,
    PublishError,
    load_credentials,
)

__all__ = ["replay", "simulate"]

log = logging.getLogger(__name__)

_SEGMENT: Final = re.compile(r"[a-z0-9_-]{1,64}")
_EXISTING_FILE: Final = click.Path(exists=True, dir_okay=False, path_type=Path)
_NEW_FILE: Final = click.Path(dir_okay=False, writable=True, path_type=Path)
_POSITIVE: Final = click.FloatRange(min=0, min_open=True)


def _settings(mqtt_url: str | None) -> Settings:
    settings = Settings.from_options(mqtt_url=mqtt_url or None)
    configure_logging(settings.log_level)
    try:
        settings.mqtt.endpoint()  # an unreadable PANTAU_MQTT_PASSWORD_FILE fails here, clearly
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return settings


def _tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for mqtts:// (PANTAU_MQTT_CA_FILE, _CERT_FILE, _KEY_FILE)."""
    try:
        return client_tls_context(settings)
    except TlsConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM; the previous handlers come back afterwards."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        # Setting the event from the handler could deadlock if the main thread is inside
        # stop.wait() (the handler runs on that thread): let a short-lived thread do it.
        threading.Thread(target=stop.set, name="stop", daemon=True).start()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _segment(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _SEGMENT.fullmatch(value):
        raise click.BadParameter(f"{value!r} must match [a-z0-9_-]{{1,64}} (a topic segment)")
    return value


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fault_rates(spec: str) -> FaultRates:
    try:
        return parse_fault_spec(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None


def _write_truth(path: Path | None, events: list[FaultEvent] | tuple[FaultEvent, ...]) -> None:
    if path is not None:
        write_ground_truth(path, sorted(events, key=lambda e: (e.start, e.device_id, e.fault)))


def _fault_line(events: list[FaultEvent] | tuple[FaultEvent, ...]) -> str:
    counts = Counter(e.fault for e in events)
    return "faults injected: " + (
        " ".join(f"{k}={v}" for k, v in sorted(counts.items())) if counts else "none"
    )


@click.command()
@click.option(
    "--mqtt", "mqtt_url", help="Broker URL, mqtt://[user:pass@]host:port [PANTAU_MQTT_URL]"
)
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    help="Devices per kind, spread over the 18 kecamatan (default: the example registry's 90)",
)
@click.option("--interval", type=_POSITIVE, help="Seconds between readings of each device")
@click.option("--rate", type=_POSITIVE, help="Messages per wall-clock second, whole fleet")
@click.option(
    "--duration", type=click.FloatRange(min=0), help="Simulated seconds (default: run on)"
)
@click.option("--speed", type=_POSITIVE, default=1.0, show_default=True, help="Simulated/wall time")
@click.option("--fast", is_flag=True, help="As fast as possible (never ahead of the wall clock)")
@click.option("--start", type=float, help="Simulated start, epoch seconds (default: see docs)")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same messages")
@click.option(
    "--city",
    default="purbalingga",
    show_default=True,
    callback=_segment,
    help="City of the generated fleet",
)
@click.option("--registry", "registry_path", type=_EXISTING_FILE, help="Simulate this registry")
@click.option("--write-registry", type=_NEW_FILE, help="Write the fleet's registry CSV here")
@click.option("--faults", default="", help="Fault rates, e.g. spike=0.01,stuck=0.005,dropout=0.001")
@click.option("--ground-truth", type=_NEW_FILE, help="Write the injected faults (CSV) here")
@click.option(
    "--credentials",
    type=_EXISTING_FILE,
    help="CSV device_id,username,password (as `pantau devices --credentials-out` writes it): "
    "one MQTT connection per device",
)
@click.option("--batch", type=click.IntRange(1, 10_000), default=1, help="Readings per message")
@click.option("--load", is_flag=True, help="Load mode: a steady --rate in real time")
@click.option("--workers", type=click.IntRange(1, 64), default=1, help="Load mode processes")
def simulate(
    mqtt_url: str | None,
    devices: int | None,
    interval: float | None,
    rate: float | None,
    duration: float | None,
    speed: float,
    fast: bool,
    start: float | None,
    seed: int,
    city: str,
    registry_path: Path | None,
    write_registry: Path | None,
    faults: str,
    ground_truth: Path | None,
    credentials: Path | None,
    batch: int,
    load: bool,
    workers: int,
) -> None:
    """Simulate Purbalingga's air-quality stations, river gauges and streetlights over MQTT."""
    settings = _settings(mqtt_url)
    rates = _fault_rates(faults)
    if interval is not None and rate is not None:
        raise click.UsageError("give --interval or --rate, not both")
    if fast and speed != 1.0:
        raise click.UsageError("give --speed or --fast, not both")
    if registry_path is not None and devices is not None:
        raise click.UsageError("give --registry or --devices, not both")
    if load:
        if rate is None:
            raise click.UsageError("--load needs --rate (messages per second)")
        if registry_path or credentials or interval:
            raise click.UsageError(
                "--load generates its own fleet (--devices), one connection per worker: "
                "no --registry, --credentials or --interval"
            )
        if fast or speed != 1.0 or start is not None:
            raise click.UsageError("--load runs in real time: no --speed, --fast or --start")
        plan = LoadPlan(
            mqtt_url=settings.mqtt.url,
            devices_per_kind=devices,
            rate=rate,
            batch=batch,
            duration_s=duration,
            seed=seed,
            city=city,
            workers=workers,
            faults=faults,
        )
        _simulate_load(plan, write_registry, ground_truth)
        return
    if workers != 1:
        raise click.UsageError("--workers is for --load")
    if rate is not None and fast:
        raise click.UsageError("--rate paces wall-clock time; it does not go with --fast")

    try:
        registry = (
            Registry.from_csv(registry_path)
            if registry_path is not None
            else purbalingga_fleet(city, devices)
        )
        logins = load_credentials(credentials) if credentials is not None else None
    except ValueError as exc:  # RegistryError is one
        raise click.ClickException(str(exc)) from None
    if rate is not None:
        # Messages per wall second = devices * speed / (interval * batch).
        interval = len(registry) * speed / (rate * batch)
    if interval is not None:
        registry = with_interval(registry, interval)
    if write_registry is not None:
        registry.write_csv(write_registry)

    now = time.time()
    if start is None:
        # Faster than real time must begin in the past: the collector rejects future readings.
        faster = fast or speed > 1.0
        start = now - (duration if duration is not None else 86400.0) if faster else now
    end = start + duration if duration is not None else None
    simulator = FleetSimulator(registry, seed=seed, start=start, end=end, faults=rates, batch=batch)
    if duration == 0:
        _write_truth(ground_truth, [])
        click.echo(f"fleet of {len(registry)} devices; nothing simulated (--duration 0)")
        return
    clock = VirtualClock(start, math.inf if fast else speed, cap_at_wall=True)
    log.info(
        "simulating",
        extra={"devices": len(registry), "start": _iso(start), "speed": "fast" if fast else speed},
    )
    result = _publish_fleet(settings, simulator, registry, clock, logins)
    truth = simulator.ground_truth
    if result.stopped:
        # Stopped early: faults of readings that never came due are not in the truth.
        truth = [e for e in truth if e.start <= result.newest_ts]
    _write_truth(ground_truth, truth)
    click.echo(
        f"simulated {len(registry)} devices from {_iso(start)}"
        + (f" to {_iso(end)}" if end is not None and not result.stopped else "")
        + f" in {result.elapsed_s:.1f} s wall"
        + (" (stopped early)" if result.stopped else "")
    )
    click.echo(
        f"messages: sent={result.messages} acked={result.acked} unacked={result.unacked} "
        f"readings={result.readings} dropped={simulator.counts['dropped']}"
    )
    click.echo(_fault_line(truth))
    if result.unacked:
        raise click.ClickException(f"{result.unacked} message(s) not acknowledged by the broker")


def _publish_fleet(
    settings: Settings,
    simulator: FleetSimulator,
    registry: Registry,
    clock: VirtualClock,
    logins: dict[str, DeviceCredentials] | None,
) -> RunResult:
    try:
        with (
            _stop_on_signals() as stop,
            MqttPublisher(
                settings.mqtt.endpoint(), credentials=logins, tls_context=_tls(settings)
            ) as publisher,
        ):
            publisher.open(d.device_id for d in registry)
            return run(simulator.messages(), publisher, clock, stop=stop, report_every_s=10.0)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from None


def _simulate_load(plan: LoadPlan, write_registry: Path | None, ground_truth: Path | None) -> None:
    fleet = plan.fleet()
    if write_registry is not None:
        fleet.write_csv(write_registry)
    try:
        with _stop_on_signals() as stop:
            result = run_load(plan, stop)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from None
    _write_truth(ground_truth, result.ground_truth)
    click.echo(
        f"load: {len(fleet)} devices, target {plan.rate:,.0f} msg/s "
        f"({plan.batch} reading(s) per message), {plan.workers} worker(s)"
    )
    click.echo(
        f"messages: sent={result.messages} acked={result.acked} unacked={result.unacked} "
        f"readings={result.readings}"
    )
    per_second = result.per_second[1:-1] or result.per_second
    click.echo(
        f"achieved {result.achieved:,.0f} msg/s over {result.elapsed_s:.2f} s "
        f"= {result.ratio:.1%} of target"
        + (
            f"; per second min={min(per_second)} median={result.median_per_second():.0f} "
            f"max={max(per_second)}"
            if per_second
            else ""
        )
    )
    if plan.faults:
        click.echo(_fault_line(result.ground_truth))


@click.command()
@click.argument("file", type=_EXISTING_FILE)
@click.option(
    "--format",
    "format_name",
    type=click.Choice(sorted(FORMATS)),
    required=True,
    help="uci, prsa, pintu_air, ea, ispu2020 (ispu: per-station index files, refused)",
)
@click.option(
    "--mqtt", "mqtt_url", help="Broker URL, mqtt://[user:pass@]host:port [PANTAU_MQTT_URL]"
)
@click.option("--speed", type=_POSITIVE, default=3600.0, show_default=True, help="Data/wall time")
@click.option("--fast", is_flag=True, help="As fast as the broker takes it")
@click.option("--city", default="replay", show_default=True, callback=_segment)
@click.option("--district", callback=_segment, help="District of every device (default: station)")
@click.option(
    "--device-id",
    callback=_segment,
    help="Device id (a prefix when the file holds several gauges); default <format>-<station>",
)
@click.option("--limit", type=click.IntRange(min=1), help="Replay only the first N data rows")
@click.option("--utc-offset", type=float, help="Hours east of UTC of the file's times (override)")
def replay(
    file: Path,
    format_name: str,
    mqtt_url: str | None,
    speed: float,
    fast: bool,
    city: str,
    district: str | None,
    device_id: str | None,
    limit: int | None,
    utc_offset: float | None,
) -> None:
    """Replay a recorded sensor file over MQTT with its original observation times."""
    fmt = FORMATS[format_name]
    if fmt.kind is None:
        raise click.ClickException(fmt.refusal)
    if fast and speed != 3600.0:
        raise click.UsageError("give --speed or --fast, not both")
    settings = _settings(mqtt_url)
    naming = DeviceNaming(city, district, device_id)
    try:
        with (
            _stop_on_signals() as stop,
            MqttPublisher(
                settings.mqtt.endpoint(),
                client_id_prefix="pantau-replay",
                tls_context=_tls(settings),
            ) as publisher,
        ):
            publisher.open()
            summary = replay_file(
                file,
                fmt,
                publisher,
                naming=naming,
                speed=math.inf if fast else speed,
                limit=limit,
                utc_offset_h=utc_offset,
                stop=stop,
            )
    except PublishError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    click.echo(f"replayed {file.name} ({fmt.summary})")
    for line in summary.lines():
        click.echo(line)
    if summary.result is not None and summary.result.unacked:
        raise click.ClickException(
            f"{summary.result.unacked} message(s) not acknowledged by the broker"
        )
