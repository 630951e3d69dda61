"""A private Mosquitto broker for development and tests."""

from __future__ import annotations

import logging
import os
import pwd
import select
import signal
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.dev.process import ManagedProcess, ServiceError, find_binary, port_accepts
from pantau.settings import Settings

__all__ = ["MAX_PACKET_BYTES", "MosquittoService", "TlsListener", "max_packet_bytes"]

logger = logging.getLogger(__name__)

_HOST: Final = "127.0.0.1"
_READ_OK: Final = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN)
# Room in an MQTT packet beyond its payload: fixed header, topic, packet id, v5 properties.
_HEADER_ROOM: Final = 64 * 1024


def max_packet_bytes(max_payload_bytes: int) -> int:
    """The broker's `max_packet_size` for a collector that rejects payloads over this size.

    Slightly larger messages still reach the collector, which rejects and keeps them with their
    reason; anything much larger the broker refuses before it reads it (it disconnects the
    client), so no one can make broker or collector hold a 100 MB message.
    """
    return max_payload_bytes + _HEADER_ROOM


# What deploy/mosquitto/mosquitto.conf sets too (tests/test_deploy_files.py checks it).
MAX_PACKET_BYTES: Final = max_packet_bytes(Settings.model_fields["max_payload_bytes"].default)


def mqtt_handshake(
    host: str,
    port: int,
    timeout: float = 1.0,
    *,
    any_connack: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> bool:
    """Whether an MQTT CONNECT to host:port is answered with a CONNACK.

    By default only a successful CONNACK counts; with `any_connack` a refusal (a broker that
    turns anonymous clients away) counts too: the broker answered MQTT, so it is up.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"pantau-probe-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect_timeout = timeout
    if tls_context is not None:
        client.tls_set_context(tls_context)
    answered: list[bool] = []  # one entry per CONNACK: whether it accepted us

    def on_connect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        answered.append(not reason.is_failure)

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)  # Sends CONNECT right away.
        deadline = time.monotonic() + timeout
        # select + loop_read instead of loop(): loop() creates a wake-up socketpair that
        # only paho's __del__ closes, and we close every socket we open ourselves.
        while not answered:
            sock = client.socket()
            remaining = deadline - time.monotonic()
            if sock is None or remaining <= 0:
                return False
            readable, _, _ = select.select([sock], [], [], min(remaining, 0.05))
            if readable and client.loop_read() not in _READ_OK and not answered:
                return False
        if answered[0]:
            client.disconnect()  # Writes DISCONNECT at once; paho then closes the socket.
        return answered[0] or any_connack
    except OSError:
        return False
    finally:
        leftover = client.socket()
        if leftover is not None:
            leftover.close()


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A TLS listener on 127.0.0.1:port with the broker's certificate and the clients' CA."""

    port: int
    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False  # clients must present a certificate signed by cafile


class MosquittoService:
    """A Mosquitto broker under `root/mosquitto`, listening on 127.0.0.1:port only.

    By default anyone on the machine may connect anonymously (the test suite's brokers). With
    `password_file` anonymous clients are refused and each client id is its user name
    (`use_username_as_clientid`: no account can take another's session); `acl_file` limits
    each user's topics; `tls` adds a TLS listener. Packets over `max_packet_size` bytes
    (default: the collector's payload limit plus header room) are refused.
    """

    binary: Final = "mosquitto"
    apt_package: Final = "mosquitto"

    def __init__(
        self,
        root: Path,
        port: int,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: TlsListener | None = None,
        max_packet_size: int = MAX_PACKET_BYTES,
    ) -> None:
        """Describe the broker; nothing is written or started until `start()`."""
        self._max_packet_size = max_packet_size
        self._dir = root.resolve() / "mosquitto"
        self._port = port
        self._password_file = password_file.resolve() if password_file else None
        self._acl_file = acl_file.resolve() if acl_file else None
        self._tls = tls
        self._process = ManagedProcess(
            "mosquitto",
            binary=self.binary,
            marker=str(self.config_path),
            pid_path=self._dir / "mosquitto.pid",
            console_log=self._dir / "console.log",
            extra_logs=(self.log_path,),
        )

    @property
    def host(self) -> str:
        """The address the broker listens on."""
        return _HOST

    @property
    def port(self) -> int:
        """The MQTT port."""
        return self._port

    @property
    def url(self) -> str:
        """The broker URL, as `PANTAU_MQTT_URL` expects it."""
        return f"mqtt://{_HOST}:{self._port}"

    @property
    def tls_url(self) -> str | None:
        """The TLS listener's URL (`mqtts://`), if there is one."""
        return f"mqtts://{_HOST}:{self._tls.port}" if self._tls else None

    @property
    def directory(self) -> Path:
        """The folder holding config, data and logs."""
        return self._dir

    @property
    def config_path(self) -> Path:
        """The generated mosquitto.conf."""
        return self._dir / "mosquitto.conf"

    @property
    def data_dir(self) -> Path:
        """The persistence folder (mosquitto.db)."""
        return self._dir / "data"

    @property
    def log_path(self) -> Path:
        """The broker's own log file."""
        return self._dir / "mosquitto.log"

    @property
    def console_log_path(self) -> Path:
        """Where the broker's stdout/stderr go (start-up errors land here)."""
        return self._process.console_log

    @property
    def pid(self) -> int | None:
        """The broker's PID while it runs."""
        return self._process.pid()

    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process.is_running()

    def render_config(self) -> str:
        """The mosquitto.conf text for this broker."""
        if any(ch.isspace() for ch in str(self._dir)):
            # mosquitto.conf splits values on whitespace and has no quoting.
            raise ServiceError(f"the services folder must not contain whitespace: {self._dir}")
        # As root, Mosquitto 2 drops privileges to `mosquitto`/`nobody`, which cannot write
        # our persistence folder; naming the current user keeps it as is (no-op for non-root).
        user = pwd.getpwuid(os.geteuid()).pw_name
        return f"""\
# Generated by `pantau services`; rewritten on every start.
# One set of security settings for every listener (plain and TLS alike).
per_listener_settings false
user {user}

listener {self._port} {_HOST}
{self._render_security()}

persistence true
# Mosquitto 1.x needs the trailing slash (2.0 adds one itself, hence "data//" in its log).
persistence_location {self.data_dir}/
# Save every second (it really saves every ~2s: the check is "older than", not "as old as")
# rather than every 30 minutes, so a crashed (SIGKILLed) broker loses at most ~2s of queued
# QoS 1 readings. A clean SIGTERM always saves on exit.
autosave_interval 1

# The default of 1000 queued messages per client makes Mosquitto silently DROP further
# QoS 1 messages for a slow or offline subscriber; we must never lose readings.
max_queued_messages 1000000
max_queued_bytes 0
# 0 = no broker-side cap (default 20). MQTT v5 subscribers such as the collector still
# get exactly the Receive Maximum they send, and v5 publishers are not told to keep at
# most 20 QoS 1 messages in flight.
max_inflight_messages 0
# The collector rejects payloads over its max_payload_bytes; the broker refuses (disconnects)
# a client sending a packet much larger than that before reading it into memory.
max_packet_size {self._max_packet_size}

log_dest file {self.log_path}
# One type per line: Mosquitto reads only the first word of a log_type line, so
# "log_type error warning notice" would mean just "error". Connection messages and the
# start-up lines are `information` (as is one "Saving in-memory database" line per autosave).
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages true
"""

    def _render_security(self) -> str:
        paths = [p for p in (self._password_file, self._acl_file) if p is not None]
        if self._tls is not None:
            paths += [self._tls.cafile, self._tls.certfile, self._tls.keyfile]
        if any(ch.isspace() for ch in "".join(map(str, paths))):
            raise ServiceError(f"broker security files must not contain whitespace: {paths}")
        lines: list[str] = []
        if self._password_file is None:
            lines.append("# No password file: the broker is loopback-only and open to local users.")
            lines.append("allow_anonymous true")
        else:
            lines.append("allow_anonymous false")
            lines.append(f"password_file {self._password_file}")
            # The client id is the user name: a device cannot connect under a collector's id
            # (and take over, or clean away, its session and queued readings), nor another's.
            lines.append("use_username_as_clientid true")
        if self._acl_file is not None:
            lines.append(f"acl_file {self._acl_file}")
        if self._tls is not None:
            tls = self._tls
            lines += [
                "",
                f"listener {tls.port} {_HOST}",
                f"cafile {tls.cafile.resolve()}",
                f"certfile {tls.certfile.resolve()}",
                f"keyfile {tls.keyfile.resolve()}",
                f"require_certificate {'true' if tls.require_certificate else 'false'}",
            ]
        return "\n".join(lines)

    def config_is_current(self) -> bool:
        """Whether mosquitto.conf on disk is what this object would write.

        A running broker started from an older (maybe anonymous) config needs a restart.
        """
        try:
            return self.config_path.read_text(encoding="utf-8") == self.render_config()
        except FileNotFoundError:
            return False

    def write_config(self) -> Path:
        """Create the folders and write mosquitto.conf."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config(), encoding="utf-8")
        return self.config_path

    def _ready(self) -> bool:
        # A full CONNECT/CONNACK (which includes the TCP connect): a bound port alone does
        # not prove the broker accepts clients yet. With a password file our anonymous probe
        # is refused, and that CONNACK proves it just as well. The TLS listener opens in the
        # same start-up step as the plain one, so probing the plain one suffices.
        return mqtt_handshake(_HOST, self._port, any_connack=self._password_file is not None)

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it answers MQTT; no-op if it already runs."""
        if self.is_running():
            # Started earlier (maybe by another process); make sure it is ours on our port.
            self._process.wait_until_ready(self._ready, timeout)
            return
        binary = find_binary(self.binary)
        if binary is None:
            raise ServiceError(
                f"`{self.binary}` is not installed: install the `{self.apt_package}` package "
                "or run `pantau services up`, which installs it when it can."
            )
        for port in (self._port, *([self._tls.port] if self._tls else [])):
            if port_accepts(_HOST, port):
                raise ServiceError(f"port {port} on {_HOST} is already in use")
        self.write_config()
        self._process.start([str(binary), "-c", str(self.config_path)])
        try:
            self._process.wait_until_ready(self._ready, timeout)
        except BaseException:
            self._process.stop()
            raise
        logger.info("mosquitto ready at %s", self.url)

    def reload(self) -> None:
        """SIGHUP the broker: it re-reads its password and ACL files (revocations apply)."""
        pid = self.pid
        if pid is None:
            raise ServiceError("mosquitto is not running")
        os.kill(pid, signal.SIGHUP)
        logger.info("mosquitto reloaded", extra={"pid": pid})

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker gracefully (it saves its persistence file); no-op if stopped."""
        self._process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the broker, for fault-injection tests."""
        self._process.kill()

    def restart(self, timeout: float = 15.0) -> None:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        self.start(timeout)
