"""`pantau services up|down|status`: private Mosquitto and InfluxDB for development."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from pydantic import ValidationError

from pantau.dev.influxdb import InfluxDBService
from pantau.dev.mosquitto import MosquittoService
from pantau.dev.process import ServiceError, ensure_installed, free_port
from pantau.settings import Settings

__all__ = ["services"]

_STATE_FILE = "services.json"
_EXIT_NOT_RUNNING = 3


@dataclass(frozen=True, slots=True)
class _Ports:
    """The ports of one services folder, remembered in DIR/services.json."""

    mqtt_port: int
    influx_port: int
    influx_rpc_port: int


def _load_ports(root: Path) -> _Ports | None:
    try:
        raw = json.loads((root / _STATE_FILE).read_text(encoding="utf-8"))
        return _Ports(int(raw["mqtt_port"]), int(raw["influx_port"]), int(raw["influx_rpc_port"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"{root / _STATE_FILE} is damaged ({exc}); remove it") from exc


def _save_ports(root: Path, ports: _Ports) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_STATE_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(ports), indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / _STATE_FILE)


def _resolve(
    directory: Path | None, mqtt_port: int | None, influx_port: int | None
) -> tuple[Path, _Ports, _Ports | None]:
    """Folder and ports: flags first, then DIR/services.json, then Settings defaults."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid PANTAU_* environment: {exc}") from exc
    root = directory if directory is not None else settings.services.dir
    saved = _load_ports(root)
    ports = _Ports(
        mqtt_port=mqtt_port or (saved.mqtt_port if saved else settings.services.mqtt_port),
        influx_port=influx_port or (saved.influx_port if saved else settings.services.influx_port),
        influx_rpc_port=saved.influx_rpc_port if saved else free_port(),
    )
    return root, ports, saved


def _build(root: Path, ports: _Ports) -> tuple[MosquittoService, InfluxDBService]:
    return (
        MosquittoService(root, ports.mqtt_port),
        InfluxDBService(root, ports.influx_port, ports.influx_rpc_port),
    )


def _line(name: str, service: MosquittoService | InfluxDBService) -> str:
    pid = service.pid
    state = f"running  pid {pid}" if pid is not None else "stopped"
    return f"{name:<10} {state:<18} {service.url}"


_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for config, data and logs  [default: PANTAU_SERVICES_DIR or .pantau]",
)
_mqtt_port_option = click.option(
    "--mqtt-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Mosquitto port  [default: remembered in DIR, else PANTAU_SERVICES_MQTT_PORT or 11883]",
)
_influx_port_option = click.option(
    "--influx-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="InfluxDB HTTP port  [default: remembered in DIR, else PANTAU_SERVICES_INFLUX_PORT "
    "or 18086]",
)


@click.group()
def services() -> None:
    """Run a private Mosquitto and InfluxDB on 127.0.0.1 (development and tests)."""


@services.command()
@_dir_option
@_mqtt_port_option
@_influx_port_option
def up(directory: Path | None, mqtt_port: int | None, influx_port: int | None) -> None:
    """Install if needed and start both services; safe to run again."""
    root, ports, saved = _resolve(directory, mqtt_port, influx_port)
    if saved is not None and saved != ports:
        # Moving a running service to another port would orphan it; make the user choose.
        for service in _build(root, saved):
            if service.is_running():
                raise click.ClickException(
                    f"{service.url} is already running from {root}; "
                    f"run `pantau services down --dir {root}` first to change ports"
                )
    broker, influx = _build(root, ports)
    try:
        ensure_installed(broker.binary, broker.apt_package)
        ensure_installed(influx.binary, influx.apt_package)
        _save_ports(root, ports)
        broker.start()
        influx.start()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    # Status to stderr and only the exports to stdout, so `eval "$(pantau services up)"` works.
    click.echo(_line("mosquitto", broker), err=True)
    click.echo(_line("influxdb", influx), err=True)
    click.echo(f"export PANTAU_MQTT_URL={shlex.quote(broker.url)}")
    click.echo(f"export PANTAU_INFLUX_URL={shlex.quote(influx.url)}")


@services.command()
@_dir_option
@_mqtt_port_option
@_influx_port_option
def down(directory: Path | None, mqtt_port: int | None, influx_port: int | None) -> None:
    """Stop both services; their data stays in DIR."""
    root, ports, _saved = _resolve(directory, mqtt_port, influx_port)
    # PID files and config paths identify the processes; the ports only label the output.
    broker, influx = _build(root, ports)
    try:
        broker.stop()
        influx.stop()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_line("mosquitto", broker))
    click.echo(_line("influxdb", influx))


@services.command()
@_dir_option
@_mqtt_port_option
@_influx_port_option
@click.pass_context
def status(
    ctx: click.Context, directory: Path | None, mqtt_port: int | None, influx_port: int | None
) -> None:
    """Show both services; exit 0 if both run, 3 otherwise."""
    root, ports, _saved = _resolve(directory, mqtt_port, influx_port)
    broker, influx = _build(root, ports)
    click.echo(_line("mosquitto", broker))
    click.echo(_line("influxdb", influx))
    if not (broker.is_running() and influx.is_running()):
        ctx.exit(_EXIT_NOT_RUNNING)
