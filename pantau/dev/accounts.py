"""Broker accounts of the private services, generated on first start and kept under DIR.

`pantau services up` and `pantau demo` run Mosquitto with passwords and ACLs like a real
deployment: one account for the collector, one for the API and one per registered device, each
with the ACL of its role (pantau/broker_auth.py). Everything lives in the services folder,
readable by its owner only:

    DIR/broker/        registry.csv (the registered fleet), accounts.passwd (hashes),
                       broker.passwd and broker.acl (what Mosquitto reads)
    DIR/credentials/   pantau-ingest-1.password, pantau-api-1.password (PANTAU_MQTT_PASSWORD_FILE),
                       devices.csv (device_id,username,password: `pantau simulate --credentials`)

Running it again keeps every password and adds accounts for devices new in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pantau.broker_auth import (
    ACL_NAME,
    PASSWORD_NAME,
    CredentialStore,
    Login,
    generate_password,
    merge_logins_csv,
    read_logins_csv,
    verify_password,
    write_broker_files,
    write_password_file,
)
from pantau.registry import Registry

__all__ = ["API_ACCOUNT", "INGEST_ACCOUNT", "DevAccounts", "provision"]

INGEST_ACCOUNT: Final = "pantau-ingest-1"
API_ACCOUNT: Final = "pantau-api-1"


@dataclass(frozen=True, slots=True)
class DevAccounts:
    """Where the private broker's accounts and the clients' credentials are."""

    root: Path
    ingest: str = INGEST_ACCOUNT
    api: str = API_ACCOUNT

    @property
    def broker_dir(self) -> Path:
        """The broker's files: registry copy, hash store, password file and ACL."""
        return self.root / "broker"

    @property
    def credentials_dir(self) -> Path:
        """The clients' secrets (mode 0700, files 0600)."""
        return self.root / "credentials"

    @property
    def registry(self) -> Path:
        """The fleet the broker accepts (a copy of the registry it was provisioned from)."""
        return self.broker_dir / "registry.csv"

    @property
    def store(self) -> Path:
        """Password hashes of every account."""
        return self.broker_dir / "accounts.passwd"

    @property
    def password_file(self) -> Path:
        """Mosquitto's `password_file`."""
        return self.broker_dir / PASSWORD_NAME

    @property
    def acl_file(self) -> Path:
        """Mosquitto's `acl_file`."""
        return self.broker_dir / ACL_NAME

    @property
    def devices_csv(self) -> Path:
        """device_id,username,password of every device (`pantau simulate --credentials`)."""
        return self.credentials_dir / "devices.csv"

    def password_path(self, account: str) -> Path:
        """The password file of a service account (PANTAU_MQTT_PASSWORD_FILE)."""
        return self.credentials_dir / f"{account}.password"

    def password(self, account: str) -> str:
        """A service account's password."""
        return self.password_path(account).read_text(encoding="utf-8").splitlines()[0]


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _service_password(accounts: DevAccounts, store: CredentialStore, name: str) -> bool:
    """Keep a service account's password (file and hash agree) or make one; whether it changed."""
    path = accounts.password_path(name)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    hashed = store.get(name)
    if lines and lines[0] and hashed is not None and verify_password(lines[0], hashed):
        return False
    password = lines[0] if lines and lines[0] else generate_password()
    write_password_file(path, password)
    store.set_password(name, password)
    return True


def provision(root: Path, source: Registry | None = None) -> DevAccounts:
    """Make sure every account exists (and every device of `source` has one); write the files."""
    accounts = DevAccounts(root)
    _private_dir(accounts.broker_dir)
    _private_dir(accounts.credentials_dir)
    store = CredentialStore.load(accounts.store)
    registered = Registry.from_csv(accounts.registry) if accounts.registry.exists() else None
    devices = {d.device_id: d for d in registered or ()}
    devices.update((d.device_id, d) for d in source or ())  # the source's facts win
    registry = Registry(devices.values())
    changed = registered is None or list(registered) != list(registry)
    for name in (accounts.ingest, accounts.api):
        changed |= _service_password(accounts, store, name)
    logins = read_logins_csv(accounts.devices_csv)
    issued: list[Login] = []
    for device_id in devices:
        login, hashed = logins.get(device_id), store.get(device_id)
        if login is not None and hashed is not None and verify_password(login.password, hashed):
            continue
        password = generate_password()
        store.set_password(device_id, password)
        issued.append(Login(device_id, device_id, password))
    if not changed and not issued and accounts.password_file.exists():
        return accounts
    store.save(accounts.store)
    registry.write_csv(accounts.registry)
    if issued:
        merge_logins_csv(accounts.devices_csv, issued)
    write_broker_files(registry, store, accounts.broker_dir)
    for path in (accounts.registry, accounts.password_file, accounts.acl_file):
        path.chmod(0o600)
    return accounts
