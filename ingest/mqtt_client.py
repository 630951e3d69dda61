"""paho's MQTT client with a lean receive path for the collector's stream of small messages.

paho handles every incoming PUBLISH on its own: at least three `recv` calls and one `select`
per message, an MQTT v5 `Properties` object built for every message, the topic matcher walked
for every `on_message`, and one queued packet (and wake-up write) per acknowledgement. For a
collector receiving tens of thousands of small messages a second, that is most of its CPU.

This subclass keeps the protocol in paho and changes only how bytes move, through the methods
paho uses to read, handle and queue packets:
- reads are buffered: one `recv` takes up to 64 KiB, and every complete packet in it is
  handled before the loop goes back to `select`;
- a QoS 0 or 1 PUBLISH without properties (what devices send) goes straight to
  `on_publish_fast(topic, payload, mid, qos, retain)`, without a `Properties` object, an
  `MQTTMessage` or the matcher; anything else (QoS 2, properties) takes paho's own path;
- `ack_many` queues the PUBACKs of a whole batch as one write.

These are paho's internal methods (checked for at import); the paho versions they are known
in are pinned in pyproject.toml, and the whole ingest suite runs through this path.
"""

from __future__ import annotations

import logging
import ssl
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

from pantau.backoff import Backoff
from pantau.tls import describe_tls_error

__all__ = ["CollectorClient", "FastPublish"]

log = logging.getLogger(__name__)

_READ_CHUNK: Final = 65536
_PUBLISH: Final = 0x30
_PUBACK: Final = 0x40
_PUBACK_FORMAT: Final = struct.Struct("!BBH")
_INTERNALS: Final = ("_sock_recv", "_packet_read", "_handle_publish", "_packet_queue")
if not all(hasattr(mqtt.Client, name) for name in _INTERNALS):  # pragma: no cover
    raise ImportError(f"this paho-mqtt lacks {_INTERNALS}: install the version pyproject.toml pins")

FastPublish = Callable[[bytes, bytes, int, int, bool], None]


class CollectorClient(mqtt.Client):
    """paho's client with buffered reads, a fast PUBLISH path, batched acks, jittered reconnects."""

    backoff: Backoff
    closing: threading.Event
    on_publish_fast: FastPublish | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    # -- reconnects -----------------------------------------------------------------------------

    def _reconnect_wait(self) -> None:
        delay = self.backoff.next_delay()
        log.info("reconnecting to broker", extra={"retry_in_s": round(delay, 2)})
        self.closing.wait(delay)

    def reconnect(self) -> MQTTErrorCode:
        """Connect again; a failed TLS handshake is logged as an ERROR before the next retry."""
        # Bytes left from the old connection belong to no packet of the new one.
        self._rbuf, self._rpos = b"", 0
        try:
            return super().reconnect()
        except ssl.SSLError as exc:
            # paho swallows connect errors and retries; without this a wrong CA would look
            # like an unreachable broker. Retrying stays right: a fixed certificate recovers.
            log.error(describe_tls_error(exc, self.host, self.port))
            raise

    # -- buffered reads -------------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(_READ_CHUNK)  # BlockingIOError: nothing there yet
            if not data:
                return data  # connection closed
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        end = min(start + bufsize, len(self._rbuf))
        self._rpos = end
        return self._rbuf[start:end]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every complete packet already read, then go back to select()."""
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN or self._rpos >= len(self._rbuf):
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- the fast PUBLISH path ------------------------------------------------------------------

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_publish_fast
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        if handler is None or qos == 2 or self._protocol != MQTTProtocolVersion.MQTTv5:
            return super()._handle_publish()
        topic_end = 2 + ((packet[0] << 8) | packet[1])
        at = topic_end + (2 if qos else 0)
        if len(packet) <= at or packet[at] != 0:  # properties present (or malformed): paho's way
            return super()._handle_publish()
        mid = ((packet[topic_end] << 8) | packet[topic_end + 1]) if qos else 0
        handler(bytes(packet[2:topic_end]), bytes(packet[at + 1 :]), mid, qos, bool(header & 1))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- batched acknowledgements ---------------------------------------------------------------

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK every QoS 1 message id given, in order, as one write."""
        pack = _PUBACK_FORMAT.pack
        packet = b"".join(pack(_PUBACK, 2, mid) for mid in mids)
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)
