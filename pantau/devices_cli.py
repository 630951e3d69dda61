"""`pantau devices`: provision devices and service accounts for the broker (passwords, ACL)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from pantau.broker_auth import (
    ACL_NAME,
    PASSWORD_NAME,
    BrokerAuthError,
    CredentialStore,
    Login,
    generate_password,
    merge_logins_csv,
    service_role,
    write_broker_files,
    write_password_file,
)
from pantau.registry import Device, Registry, RegistryError

__all__ = ["devices"]

_FILE = click.Path(dir_okay=False, path_type=Path)
_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@dataclass(frozen=True, slots=True)
class _Paths:
    """Where the registry, the hash store and the broker's files live."""

    registry: Path
    store: Path
    broker_dir: Path
    reload_pid_file: Path | None


@dataclass(slots=True)
class _State:
    """The registry and credential store, loaded under the lock."""

    registry: Registry
    store: CredentialStore


@click.group()
@click.option(
    "--registry",
    type=_FILE,
    envvar="PANTAU_REGISTRY",
    required=True,
    help="Device registry CSV (created when missing) [PANTAU_REGISTRY]",
)
@click.option(
    "--store",
    type=_FILE,
    help="Password hashes of devices and services (default: <registry>.passwd)",
)
@click.option(
    "--broker-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where {PASSWORD_NAME} and {ACL_NAME} for Mosquitto go (default: the registry's folder)",
)
@click.option(
    "--reload-pid-file",
    type=_FILE,
    help="After a change, SIGHUP the broker whose PID is in this file (it re-reads both files)",
)
@click.pass_context
def devices(
    ctx: click.Context,
    registry: Path,
    store: Path | None,
    broker_dir: Path | None,
    reload_pid_file: Path | None,
) -> None:
    """Register devices, issue broker passwords and regenerate Mosquitto's password file and ACL.

    Only password hashes are kept; a new password is shown once (or written with
    --credentials-out as device_id,username,password, which `pantau simulate --credentials`
    reads). Service accounts, one per replica (the broker uses the user name as the client
    id): pantau-ingest-NAME for collectors, pantau-api-NAME for API replicas.
    """
    ctx.obj = _Paths(
        registry=registry,
        store=store or registry.with_name(registry.name + ".passwd"),
        broker_dir=broker_dir or registry.parent,
        reload_pid_file=reload_pid_file,
    )


@contextlib.contextmanager
def _editing(paths: _Paths, *, write: bool = True) -> Iterator[_State]:
    """Load registry and store under a lock; on success write them and the broker files."""
    paths.store.parent.mkdir(parents=True, exist_ok=True)
    lock_path = paths.store.with_name(paths.store.name + ".lock")
    with lock_path.open("a") as lock:
        # Two provisioning runs at once would each write back their own view and lose the other's.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            registry = (
                Registry.from_csv(paths.registry) if paths.registry.exists() else Registry(())
            )
            state = _State(registry, CredentialStore.load(paths.store))
        except (RegistryError, BrokerAuthError) as exc:
            raise click.ClickException(str(exc)) from None
        yield state
        if write:
            # Hashes first, then the registry: a crash in between leaves an unused hash (which
            # the broker files skip), never a registered device whose password was lost.
            state.store.save(paths.store)
            state.registry.write_csv(paths.registry)
            try:
                write_broker_files(state.registry, state.store, paths.broker_dir)
            except BrokerAuthError as exc:
                raise click.ClickException(str(exc)) from None
    if write:
        _reload(paths)


def _reload(paths: _Paths) -> None:
    if paths.reload_pid_file is None:
        click.echo(
            f"wrote {paths.broker_dir / PASSWORD_NAME} and {paths.broker_dir / ACL_NAME}; "
            "reload the broker to apply (SIGHUP, e.g. `systemctl reload mosquitto`)",
            err=True,
        )
        return
    try:
        pid = int(paths.reload_pid_file.read_text(encoding="ascii").strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise click.ClickException(
            f"files written, but the broker was not reloaded ({paths.reload_pid_file}: {exc})"
        ) from None
    click.echo(f"broker (pid {pid}) reloaded", err=True)


def _read_password(path: Path | None) -> str:
    if path is None:
        return generate_password()
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise click.ClickException(f"{path}: the first line must hold the password")
    return lines[0]


def _hand_out(logins: list[Login], credentials_out: Path | None) -> None:
    """Show new passwords once, or add them to the credentials file."""
    if not logins:
        return
    if credentials_out is not None:
        try:
            merge_logins_csv(credentials_out, logins)
        except BrokerAuthError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{len(logins)} password(s) written to {credentials_out}", err=True)
        return
    click.echo("device_id,username,password  (shown once: only hashes are kept)", err=True)
    for login in logins:
        click.echo(f"{login.device_id},{login.username},{login.password}")


def _check_new_id(state: _State, device_id: str) -> None:
    if service_role(device_id) is not None:
        raise click.ClickException(f"{device_id!r} is a service account name, not a device id")
    if device_id in state.registry:
        raise click.ClickException(f"device {device_id!r} is already registered")


@devices.command()
@click.argument("device_id")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["air_quality", "water_level", "streetlight"]),
    help="Sensor kind",
)
@click.option("--city", required=True, help="City topic segment, e.g. purbalingga")
@click.option("--district", required=True, help="District topic segment, e.g. bobotsari")
@click.option("--lat", type=float, required=True, help="Latitude, decimal degrees")
@click.option("--lon", type=float, required=True, help="Longitude, decimal degrees")
@click.option("--interval", type=float, required=True, help="Reporting interval, seconds")
@click.option("--waspada-cm", type=float, help="Gauges: Waspada threshold")
@click.option("--siaga-cm", type=float, help="Gauges: Siaga threshold")
@click.option("--awas-cm", type=float, help="Gauges: Awas threshold")
@click.option("--river", help="Gauges: river name")
@click.option(
    "--peer-group",
    help="Drift peers, e.g. river:klawing (default: a gauge's river, the city's airshed, "
    "a lamp's district circuit)",
)
@click.option(
    "--peer-order", type=int, help="Gauges: place along the river from upstream (1: the top)"
)
@click.option("--rated-w", type=float, help="Streetlights: rated power, W")
@click.option("--password-file", type=_EXISTING_FILE, help="Take the password from this file")
@click.option("--credentials-out", type=_FILE, help="Add the login to this CSV instead of printing")
@click.pass_obj
def add(
    paths: _Paths,
    device_id: str,
    kind: str,
    city: str,
    district: str,
    lat: float,
    lon: float,
    interval: float,
    waspada_cm: float | None,
    siaga_cm: float | None,
    awas_cm: float | None,
    river: str | None,
    peer_group: str | None,
    peer_order: int | None,
    rated_w: float | None,
    password_file: Path | None,
    credentials_out: Path | None,
) -> None:
    """Register one device and issue its broker password."""
    try:
        device = Device(
            device_id=device_id,
            kind=kind,
            city=city,
            district=district,
            lat=lat,
            lon=lon,
            interval_s=interval,
            waspada_cm=waspada_cm,
            siaga_cm=siaga_cm,
            awas_cm=awas_cm,
            rated_w=rated_w,
            river=river,
            peer_group=peer_group,
            peer_order=peer_order,
        )
    except ValueError as exc:
        raise click.ClickException(f"device {device_id!r}: {exc}") from None
    password = _read_password(password_file)
    with _editing(paths) as state:
        _check_new_id(state, device_id)
        state.store.set_password(device_id, password)
        state.registry = Registry([*state.registry, device])
    click.echo(f"added {device_id} (publishes on {device.topic})", err=True)
    _hand_out([Login(device_id, device_id, password)], credentials_out)


@devices.command(name="import")
@click.argument("csv_file", type=_EXISTING_FILE)
@click.option(
    "--credentials-out", type=_FILE, help="Add the logins to this CSV instead of printing"
)
@click.pass_obj
def import_(paths: _Paths, csv_file: Path, credentials_out: Path | None) -> None:
    """Register every device of a registry-format CSV and issue a password for each."""
    try:
        incoming = Registry.from_csv(csv_file)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    logins: list[Login] = []
    with _editing(paths) as state:
        for device in incoming:  # all or nothing: any clash stops before anything is written
            _check_new_id(state, device.device_id)
        for device in incoming:
            password = generate_password()
            state.store.set_password(device.device_id, password)
            logins.append(Login(device.device_id, device.device_id, password))
        state.registry = Registry([*state.registry, *incoming])
    click.echo(f"imported {len(incoming)} device(s) from {csv_file}", err=True)
    _hand_out(logins, credentials_out)


@devices.command()
@click.argument("device_ids", nargs=-1, required=True)
@click.pass_obj
def revoke(paths: _Paths, device_ids: tuple[str, ...]) -> None:
    """Remove devices or service accounts from the registry, the store and the broker files."""
    with _editing(paths) as state:
        unknown = [
            d
            for d in device_ids
            if d not in state.registry and not (service_role(d) and d in state.store)
        ]
        if unknown:
            raise click.ClickException(f"unknown device(s): {', '.join(unknown)}")
        gone = set(device_ids)
        for device_id in gone:
            state.store.remove(device_id)
        state.registry = Registry(d for d in state.registry if d.device_id not in gone)
    click.echo(f"revoked {', '.join(device_ids)}", err=True)


@devices.command()
@click.argument("name")
@click.option("--password-file", type=_EXISTING_FILE, help="Take the password from this file")
@click.option("--credentials-out", type=_FILE, help="Add the login to this CSV instead of printing")
@click.option(
    "--password-out",
    type=_FILE,
    help="Write the new password to this file (mode 0600) instead of printing: what "
    "PANTAU_MQTT_PASSWORD_FILE reads",
)
@click.pass_obj
def passwd(
    paths: _Paths,
    name: str,
    password_file: Path | None,
    credentials_out: Path | None,
    password_out: Path | None,
) -> None:
    """Issue a new password for a device, or create or renew a service account.

    Service accounts are named pantau-ingest-REPLICA (a collector) or pantau-api-REPLICA (an
    API replica), one per replica: the broker uses the user name as the client id.
    """
    password = _read_password(password_file)
    with _editing(paths) as state:
        if service_role(name) is None and name not in state.registry:
            raise click.ClickException(
                f"unknown device {name!r}; service accounts are named pantau-ingest-REPLICA "
                "or pantau-api-REPLICA (e.g. pantau-ingest-1)"
            )
        state.store.set_password(name, password)
    if password_out is not None:
        write_password_file(password_out, password)
        click.echo(f"password of {name} written to {password_out}", err=True)
        if credentials_out is None:
            return
    _hand_out([Login(name, name, password)], credentials_out)


@devices.command()
@click.pass_obj
def render(paths: _Paths) -> None:
    """Rewrite the broker's password file and ACL (after editing the registry by hand)."""
    with _editing(paths):
        pass


@devices.command(name="list")
@click.pass_obj
def list_(paths: _Paths) -> None:
    """Show service accounts and devices, their topics and whether they can log in."""
    with _editing(paths, write=False) as state:
        for name in state.store:
            role = service_role(name)
            if role is not None:
                click.echo(f"{name:<24} {'service':<12} {'password set':<13} {role}")
        for device in state.registry:
            status = "password set" if device.device_id in state.store else "no password"
            click.echo(f"{device.device_id:<24} {device.kind:<12} {status:<13} {device.topic}")
