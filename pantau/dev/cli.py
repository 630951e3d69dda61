"""`pantau services up|down|status`: private Mosquitto and InfluxDB for development."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from pydantic import ValidationError

from pantau.broker_auth import BrokerAuthError
from pantau.dev.accounts import DevAccounts, provision
from pantau.dev.influxdb import InfluxDBService
from pantau.dev.mosquitto import MosquittoService
from pantau.dev.process import ServiceError, ensure_installed, free_port
from pantau.registry import Registry, RegistryError
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
    accounts = DevAccounts(root)
    return (
        # Passwords and ACLs like a real deployment (pantau/dev/accounts.py): on an open
        # broker anyone could inject anomalies, fake indicators and acknowledgements.
        MosquittoService(
            root, ports.mqtt_port, password_file=accounts.password_file, acl_file=accounts.acl_file
        ),
        InfluxDBService(root, ports.influx_port, ports.influx_rpc_port),
    )


_EXAMPLE_REGISTRY = Path("deploy/registry.example.csv")


def _fleet(registry: Path | None) -> tuple[Registry | None, Path | None]:
    """The fleet to make device accounts for: --registry, PANTAU_REGISTRY, else the example."""
    if registry is None:
        try:
            registry = Settings().registry
        except ValidationError as exc:
            raise click.ClickException(f"invalid PANTAU_* environment: {exc}") from exc
    if registry is None and _EXAMPLE_REGISTRY.is_file():
        registry = _EXAMPLE_REGISTRY
    if registry is None:
        return None, None
    try:
        return Registry.from_csv(registry), registry
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc


def _explain(accounts: DevAccounts, source: Path | None) -> None:
    """Tell the user (on stderr) how each part logs in to the broker."""
    creds = accounts.credentials_dir
    fleet = f"from {source}" if source is not None else "none: pass --registry FILE"
    lines = [
        f"broker accounts (anonymous clients are refused); secrets in {creds}/ (mode 0600):",
        f"  collector  PANTAU_MQTT_USERNAME={accounts.ingest} "
        f"PANTAU_MQTT_PASSWORD_FILE={accounts.password_path(accounts.ingest)} pantau ingest",
        f"  API        PANTAU_MQTT_USERNAME={accounts.api} "
        f"PANTAU_MQTT_PASSWORD_FILE={accounts.password_path(accounts.api)} pantau api",
        f"  devices    ({fleet}) pantau simulate --registry {accounts.registry} "
        f"--credentials {accounts.devices_csv}",
    ]
    click.echo("\n".join(lines), err=True)


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
@click.option(
    "--registry",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Fleet whose devices get broker accounts  [default: PANTAU_REGISTRY, else "
    "deploy/registry.example.csv]",
)
def up(
    directory: Path | None, mqtt_port: int | None, influx_port: int | None, registry: Path | None
) -> None:
    """Install if needed and start both services; safe to run again.

    The broker refuses anonymous clients: the collector, the API and every device of the
    registry get their own account and ACL on the first start (kept in DIR, mode 0600).
    """
    root, ports, saved = _resolve(directory, mqtt_port, influx_port)
    fleet, source = _fleet(registry)
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
        accounts = provision(root, fleet)
        if broker.is_running() and not broker.config_is_current():
            broker.stop()  # started from an older (maybe anonymous) config; sessions persist
        if broker.is_running():
            broker.reload()  # re-reads the password file and the ACL
        broker.start()
        influx.start()
    except (ServiceError, BrokerAuthError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    # Status to stderr and only the exports to stdout, so `eval "$(pantau services up)"` works.
    click.echo(_line("mosquitto", broker), err=True)
    click.echo(_line("influxdb", influx), err=True)
    _explain(accounts, source)
    # No password in the URL: each part has its own account (see the lines on stderr).
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
