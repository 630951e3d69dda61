"""QoS 1 publishing like real devices: one shared MQTT v5 connection, or one per device.

paho is driven from the caller's thread (no network thread): `publish` writes at once and
`wait` services the sockets while the caller paces itself. One thread for any number of
connections keeps large per-device fleets cheap and avoids handing every message across threads.
"""

from __future__ import annotations

import csv
import logging
import selectors
import ssl
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.backoff import Backoff
from pantau.settings import MqttEndpoint, mqtt_endpoint
from pantau.tls import describe_tls_error

__all__ = ["DeviceCredentials", "MqttPublisher", "PublishError", "load_credentials"]

log = logging.getLogger(__name__)

_SHARED: Final = ""  # the link key of the shared connection
_MAINTAIN_EVERY_S: Final = 0.25
_RECONNECT_MAX_S: Final = 30.0


class PublishError(RuntimeError):
    """The broker could not be reached or refused a connection."""


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """The MQTT login of one device."""

    username: str
    password: str


def load_credentials(path: Path) -> dict[str, DeviceCredentials]:
    """Read a CSV with the header device_id,username,password."""
    with path.open(newline="", encoding="utf-8-sig") as source:
        reader = csv.DictReader(source)
        missing = {"device_id", "username", "password"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return {
            row["device_id"].strip(): DeviceCredentials(row["username"], row["password"])
            for row in reader
            if row["device_id"].strip()
        }


class _Link:
    """One MQTT connection and its bookkeeping."""

    def __init__(self, client: mqtt.Client, name: str) -> None:
        self.client = client
        self.name = name
        self.sock: Any = None  # the socket registered with the selector
        self.outstanding = 0  # published, not yet acknowledged by the broker
        self.connected = False
        self.refused: str | None = None
        self.retry_at: float | None = None
        self.backoff = Backoff(0.5, _RECONNECT_MAX_S)
        self.window = 20  # unacknowledged messages allowed; set from the broker's CONNACK


class MqttPublisher:
    """Publishes at QoS 1 over MQTT v5 and counts the broker's acknowledgements."""

    def __init__(
        self,
        url: str | MqttEndpoint,
        *,
        credentials: Mapping[str, DeviceCredentials] | None = None,
        client_id_prefix: str = "pantau-sim",
        inflight: int = 1000,
        keepalive_s: int = 60,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Describe the connections; nothing connects until `open()`.

        `tls_context` (see pantau.tls.client_tls_context) is used for mqtts:// URLs; without
        one they verify the broker against the system trust store. `url` may be an endpoint
        with credentials from elsewhere (`settings.mqtt.endpoint()`: a password file).
        """
        self._endpoint = mqtt_endpoint(url) if isinstance(url, str) else url
        # One context for every link: certificates and the CA are loaded once.
        if tls_context is None and self._endpoint.tls:
            tls_context = ssl.create_default_context()
        self._tls_context = tls_context
        self._credentials = credentials
        self._prefix = client_id_prefix
        # Packet ids are 16-bit: stay well below 65,535 unacknowledged messages per connection.
        self._inflight = max(1, min(inflight, 30_000))
        self._keepalive = keepalive_s
        self._selector = selectors.DefaultSelector()
        self._links: dict[str, _Link] = {}
        self._backlog: set[_Link] = set()  # links with bytes paho could not write yet
        self._next_maintenance = 0.0
        self.published = 0
        self.acked = 0
        self.refused = 0  # PUBACKs with a failure reason (e.g. not authorised)

    def open(self, device_ids: Iterable[str] = (), timeout_s: float = 10.0) -> None:
        """Connect (one link per device with credentials, else one shared) and await CONNACKs."""
        if self._credentials is None:
            self._links[_SHARED] = self._link(f"{self._prefix}-{uuid.uuid4().hex[:8]}", None)
        else:
            ids = list(device_ids)
            unknown = [d for d in ids if d not in self._credentials]
            if unknown:
                shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
                raise PublishError(f"no credentials for {len(unknown)} device(s): {shown}")
            for device_id in ids:
                # Devices connect under their own id, which broker ACLs commonly key on.
                self._links[device_id] = self._link(device_id, self._credentials[device_id])
        for link in self._links.values():
            try:
                link.client.connect(
                    self._endpoint.host, self._endpoint.port, keepalive=self._keepalive
                )
            except ssl.SSLError as exc:  # before OSError, of which it is one
                # A wrong CA fails every connection alike: stop at once and say why.
                raise PublishError(
                    describe_tls_error(exc, self._endpoint.host, self._endpoint.port)
                ) from None
            except OSError as exc:
                raise PublishError(
                    f"cannot reach MQTT broker {self._endpoint.host}:{self._endpoint.port}: {exc}"
                ) from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            refused = [link for link in self._links.values() if link.refused]
            if refused:
                raise PublishError(f"broker refused {refused[0].name}: {refused[0].refused}")
            if all(link.connected for link in self._links.values()):
                log.info("connected", extra={"connections": len(self._links)})
                return
            self._pump(0.05)
        waiting = sum(not link.connected for link in self._links.values())
        raise PublishError(f"{waiting} connection(s) got no CONNACK within {timeout_s}s")

    def _link(self, client_id: str, login: DeviceCredentials | None) -> _Link:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        link = _Link(client, client_id)
        if login is not None:
            client.username_pw_set(login.username, login.password)
        elif self._endpoint.username is not None:
            client.username_pw_set(self._endpoint.username, self._endpoint.password)
        if self._tls_context is not None:
            client.tls_set_context(self._tls_context)
        # paho cannot follow the broker's Receive Maximum (it may not change the limit once
        # connected), so paho sends at once and `publish` keeps the window itself.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.user_data_set(link)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        return link

    def _on_socket_open(self, client: mqtt.Client, link: _Link, sock: Any) -> None:
        link.sock = sock
        self._selector.register(sock, selectors.EVENT_READ, link)

    def _on_socket_close(self, client: mqtt.Client, link: _Link, sock: Any) -> None:
        if link.sock is sock:
            self._selector.unregister(sock)
            link.sock = None
        self._backlog.discard(link)

    def _on_connect(
        self,
        client: mqtt.Client,
        link: _Link,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            link.refused = str(reason)
            log.error("connection refused", extra={"client": link.name, "reason": str(reason)})
            return
        link.connected = True
        link.backoff.reset()
        # Mosquitto disconnects a v5 client that exceeds the Receive Maximum it announced.
        limit = getattr(properties, "ReceiveMaximum", None)
        link.window = min(self._inflight, limit or self._inflight)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        link: _Link,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if link.connected:
            log.warning("connection lost", extra={"client": link.name, "reason": str(reason)})
        link.connected = False
        link.retry_at = time.monotonic()

    def _on_publish(
        self,
        client: mqtt.Client,
        link: _Link,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        link.outstanding -= 1
        self.acked += 1
        if reason.is_failure:
            self.refused += 1

    def publish(self, device_id: str, topic: str, payload: bytes) -> None:
        """Send one message at QoS 1 (queued by paho while the connection is down)."""
        link = self._links.get(_SHARED) or self._links[device_id]
        while link.outstanding >= link.window:
            self._pump(0.01)
        link.outstanding += 1
        self.published += 1
        link.client.publish(topic, payload, qos=1)
        if link.client.want_write():
            self._backlog.add(link)
        if self.published % 64 == 0:
            self._pump(0.0)  # read PUBACKs as we go, so the socket buffers never fill

    def wait(self, seconds: float) -> None:
        """Sleep for `seconds` while servicing the connections."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._pump(min(remaining, _MAINTAIN_EVERY_S))

    @property
    def outstanding(self) -> int:
        """Messages published and not yet acknowledged."""
        return self.published - self.acked

    def flush(self, timeout_s: float) -> int:
        """Wait until the broker acknowledged everything; return how many are still unacked."""
        deadline = time.monotonic() + timeout_s
        while self.outstanding > 0 and time.monotonic() < deadline:
            self._pump(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.outstanding

    def _pump(self, timeout: float) -> None:
        if self._backlog:
            timeout = min(timeout, 0.001)
            for link in list(self._backlog):
                link.client.loop_write()
                if not link.client.want_write():
                    self._backlog.discard(link)
        if self._selector.get_map():
            for key, _ in self._selector.select(timeout):
                link = key.data
                link.client.loop_read(1000)
                # TLS may hold decrypted bytes the socket no longer signals.
                while link.sock is not None and _pending(link.sock):
                    link.client.loop_read(1000)
        elif timeout > 0:
            time.sleep(timeout)
        now = time.monotonic()
        if now >= self._next_maintenance:
            self._next_maintenance = now + _MAINTAIN_EVERY_S
            self._maintain(now)

    def _maintain(self, now: float) -> None:
        for link in self._links.values():
            if link.sock is not None:
                link.client.loop_misc()  # keepalive PINGREQ
            elif link.retry_at is not None and now >= link.retry_at and not link.refused:
                self._reconnect(link, now)

    def _reconnect(self, link: _Link, now: float) -> None:
        try:
            link.client.reconnect()
            link.retry_at = None
            log.info("reconnecting", extra={"client": link.name})
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                host, port = self._endpoint.host, self._endpoint.port
                log.error(describe_tls_error(exc, host, port), extra={"client": link.name})
            # Full jitter, capped: a fleet of devices must not reconnect in lockstep.
            link.retry_at = now + link.backoff.next_delay()
            log.warning("reconnect failed", extra={"client": link.name, "error": str(exc)})

    def close(self) -> None:
        """Disconnect every link and release the sockets."""
        for link in self._links.values():
            if link.sock is not None:
                link.connected = False
                link.client.disconnect()  # written at once; paho then closes the socket
            leftover = link.client.socket()
            if leftover is not None:
                leftover.close()
        self._links.clear()
        self._backlog.clear()
        self._selector.close()

    def __enter__(self) -> MqttPublisher:
        """Use as a context manager; `open()` is still called explicitly."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close on the way out."""
        self.close()


def _pending(sock: Any) -> bool:
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
