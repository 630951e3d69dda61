"""Broker credentials and access rules: Mosquitto's password file and ACL from the registry."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pantau.derived import ACKS_ALL, DERIVED_ALL
from pantau.files import write_atomically
from pantau.registry import Registry

__all__ = [
    "ACL_NAME",
    "PASSWORD_NAME",
    "SERVICE_ACCOUNT",
    "SERVICE_ROLES",
    "BrokerAuthError",
    "CredentialStore",
    "Login",
    "generate_password",
    "hash_password",
    "merge_logins_csv",
    "read_logins_csv",
    "render_acl",
    "render_password_file",
    "service_role",
    "verify_password",
    "write_broker_files",
    "write_password_file",
]

# The two files Mosquitto reads (`password_file`, `acl_file`), written into the broker folder.
PASSWORD_NAME: Final = "broker.passwd"
ACL_NAME: Final = "broker.acl"

# Service role -> the ACL lines of each of its accounts. Collectors read every reading, also
# through a shared subscription, and publish derived data; the API follows derived data and
# publishes acks. Nobody else may write either: the API believes what arrives there.
SERVICE_ROLES: Final[Mapping[str, tuple[str, ...]]] = {
    "ingest": (
        "topic read city/#",
        # Mosquitto 2.0 checks `read` when it delivers, against the message's own topic, so
        # `city/#` covers $share/GROUP/city/... too; brokers that check the subscription
        # filter itself see the prefix, which this line allows.
        "topic read $share/+/city/#",
        # Clears readings a device published retained (an empty retained publish once they are
        # stored): Mosquitto's ACL has no rule for the retain flag. No new power: a collector
        # writes InfluxDB directly anyway.
        "topic write city/#",
        f"topic write {DERIVED_ALL}",
    ),
    "api": (
        f"topic read {DERIVED_ALL}",
        f"topic readwrite {ACKS_ALL}",
        # Replicas announce themselves here (alert notifications go through one of them).
        "topic readwrite pantau/ops/replicas/+",
    ),
}
# One account per replica, `pantau-ingest-1`, `pantau-api-node2`...: the broker binds each
# client id to its user name (`use_username_as_clientid`), so a replica's session can be taken
# by nobody, and two replicas sharing an account would take each other's. The bare names
# `pantau-ingest` and `pantau-api` stay valid for one-replica deployments made before.
SERVICE_ACCOUNT: Final = re.compile(r"pantau-(ingest|api)(?:-[a-z0-9_-]{1,50})?")

# Mosquitto 2.x "$7$": PBKDF2-HMAC-SHA512. 101 iterations and a 12-byte salt are what
# `mosquitto_passwd` writes; generated passwords carry 192 random bits, so stretching adds
# nothing there, and every connect pays for the iterations on the broker.
_ITERATIONS: Final = 101
_SALT_BYTES: Final = 12
_HASH: Final = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
_USERNAME: Final = re.compile(r"[a-z0-9_-]{1,64}")
_LOGINS_HEADER: Final = ("device_id", "username", "password")


class BrokerAuthError(ValueError):
    """A credentials store, password or login file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Login:
    """A plaintext login, only ever handed to whoever provisions the device."""

    device_id: str
    username: str
    password: str


def service_role(name: str) -> str | None:
    """The role (`ingest`, `api`) of a service account name, or None for any other name."""
    match = SERVICE_ACCOUNT.fullmatch(name)
    return match.group(1) if match else None


def generate_password() -> str:
    """A fresh random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS
) -> str:
    """The Mosquitto 2.x password-file hash `$7$iterations$salt$hash` of a password."""
    if not password or any(ch in password for ch in "\r\n\0"):
        raise BrokerAuthError("a password must be non-empty and one line")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encode = base64.b64encode
    return f"$7${iterations}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches a `$7$` hash."""
    match = _HASH.fullmatch(encoded)
    if match is None:
        return False
    iterations, salt, expected = match.groups()
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(digest, base64.b64decode(expected))


class CredentialStore:
    """Username -> password hash, kept in a file in Mosquitto's password-file format."""

    def __init__(self, hashes: Mapping[str, str] | None = None) -> None:
        """Hold these hashes (a copy)."""
        self._hashes = dict(hashes or {})

    @classmethod
    def load(cls, path: Path) -> CredentialStore:
        """Read a store; a missing file is an empty store."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        hashes: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            username, sep, encoded = line.partition(":")
            if not sep or _USERNAME.fullmatch(username) is None or not _HASH.fullmatch(encoded):
                raise BrokerAuthError(f"{path} line {number}: not `username:$7$...`")
            if username in hashes:
                raise BrokerAuthError(f"{path} line {number}: {username!r} appears twice")
            hashes[username] = encoded
        return cls(hashes)

    def save(self, path: Path) -> None:
        """Write the store atomically, readable by its owner only."""
        write_atomically(
            path,
            "".join(f"{u}:{h}\n" for u, h in self._hashes.items()),
            mode=0o600,
            keep_existing_mode=True,
        )

    def set_password(self, username: str, password: str) -> None:
        """Store the hash of a (new) password for a user."""
        if _USERNAME.fullmatch(username) is None:
            raise BrokerAuthError(f"username {username!r} is not [a-z0-9_-]{{1,64}}")
        self._hashes[username] = hash_password(password)

    def remove(self, username: str) -> bool:
        """Forget a user; whether it was there."""
        return self._hashes.pop(username, None) is not None

    def get(self, username: str) -> str | None:
        """The stored hash of a user, or None."""
        return self._hashes.get(username)

    def __contains__(self, username: object) -> bool:
        """Whether a user has a password."""
        return username in self._hashes

    def __iter__(self) -> Iterator[str]:
        """Usernames in insertion order."""
        return iter(self._hashes)


def _accounts(registry: Registry, store: CredentialStore) -> Iterator[str]:
    """Active accounts: service accounts with a password, then registered devices with one."""
    clash = [d.device_id for d in registry if service_role(d.device_id) is not None]
    if clash:
        # A device under a service name would get that service's role (or take its session).
        raise BrokerAuthError(f"device id(s) {', '.join(clash)} are service account names")
    yield from (name for name in store if service_role(name) is not None)
    yield from (d.device_id for d in registry if d.device_id in store)


def render_password_file(registry: Registry, store: CredentialStore) -> str:
    """Mosquitto's password file: service accounts and every registered device with a password."""
    # A device removed from the registry drops out here even if its hash lingers in the store.
    return "".join(f"{name}:{store.get(name)}\n" for name in _accounts(registry, store))


def render_acl(registry: Registry, store: CredentialStore) -> str:
    """Mosquitto's ACL: each device writes its own topic only; services get their roles."""
    out = [
        "# Generated by `pantau devices`; rewritten on every change: do not edit by hand.",
        "# Nothing is allowed unless granted below (anonymous clients are refused outright).",
        "# The broker binds each client id to its user name (use_username_as_clientid).",
    ]
    for name in _accounts(registry, store):
        role = service_role(name)
        device = registry.get(name)
        if role is not None:
            grants = SERVICE_ROLES[role]
        else:
            assert device is not None  # _accounts yields registered devices only
            grants = (f"topic write {device.topic}",)
        out += ["", f"user {name}", *grants]
    return "\n".join(out) + "\n"


def write_broker_files(registry: Registry, store: CredentialStore, broker_dir: Path) -> None:
    """Write the password file and the ACL into `broker_dir` (each atomically)."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    # Both readable by the broker's group: Mosquitto re-reads them on SIGHUP after it has
    # dropped root. An existing file's mode and group are kept (see pantau.files).
    write_atomically(
        broker_dir / PASSWORD_NAME,
        render_password_file(registry, store),
        mode=0o640,
        keep_existing_mode=True,
    )
    write_atomically(
        broker_dir / ACL_NAME, render_acl(registry, store), mode=0o640, keep_existing_mode=True
    )


def read_logins_csv(path: Path) -> dict[str, Login]:
    """The rows of a `device_id,username,password` file by device id; a missing file is empty."""
    rows: dict[str, Login] = {}
    if path.exists():
        with path.open(newline="", encoding="utf-8-sig") as source:
            reader = csv.DictReader(source)
            if tuple(reader.fieldnames or ()) != _LOGINS_HEADER:
                raise BrokerAuthError(f"{path}: header must be {','.join(_LOGINS_HEADER)}")
            for row in reader:
                rows[row["device_id"]] = Login(row["device_id"], row["username"], row["password"])
    return rows


def merge_logins_csv(path: Path, logins: Iterable[Login]) -> None:
    """Add or replace rows in a `device_id,username,password` file (what `simulate` reads)."""
    rows = read_logins_csv(path)
    for login in logins:
        rows[login.device_id] = login
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_LOGINS_HEADER)
    writer.writerows((r.device_id, r.username, r.password) for r in rows.values())
    write_atomically(path, buffer.getvalue(), mode=0o600, keep_existing_mode=True)


def write_password_file(path: Path, password: str) -> None:
    """Write a one-line password file (`PANTAU_MQTT_PASSWORD_FILE`), mode 0600, atomically."""
    if not password or any(ch in password for ch in "\r\n\0"):
        raise BrokerAuthError("a password must be non-empty and one line")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, password + "\n", mode=0o600, keep_existing_mode=True)
