"""Pieces of the delivery fault tests: a known stream of all three kinds, an InfluxDB proxy."""

from __future__ import annotations

import collections
import json
import math
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.influx import InfluxClient
from pantau.settings import mqtt_endpoint
from processors.catalog import CATALOG
from tests.ingest_helpers import PacedPublisher, rows, scrape, wait_for

KINDS: Final = ("air_quality", "water_level", "streetlight")
# The fields the stream publishes per kind (names, units and ranges from processors/catalog.py).
FIELDS: Final = {
    "air_quality": ("pm25", "pm10"),
    "water_level": ("level_cm",),
    "streetlight": ("lamp_on", "dim_pct", "power_w"),
}
_PREFIX: Final = {"air_quality": "aq", "water_level": "wl", "streetlight": "sl"}
_DISTRICTS: Final = ("bobotsari", "kemangkon", "purbalingga", "rembang", "mrebet")
SPIKE_PM25: Final = 900.0  # far above a steady ~30 ug/m3, well inside pm25's 0..2000 range

Key = tuple[str, str, int, str]  # (measurement, device_id, ts_ns, field)


def _check_ranges() -> None:
    """The stream's fields exist in the catalog (a renamed field must fail loudly here)."""
    for kind, names in FIELDS.items():
        known = CATALOG[kind].field_names
        missing = [name for name in names if name not in known]
        assert not missing, f"{kind}: {missing} not in the catalog"


_check_ranges()


def _within(kind: str, name: str, value: float) -> float:
    spec = CATALOG[kind].fields[CATALOG[kind].column(name)]
    assert spec.low <= value <= spec.high, (kind, name, value)
    return value


class MultiStream(PacedPublisher):
    """A known stream of air_quality, water_level and streetlight readings from a thread.

    Topics are `city/{city}/{district}/{kind}/{device}`; each message is a gateway batch of
    `per_message` consecutive readings of one device, and every device advances in turn.
    Readings are `interval_s` apart per device and end an hour before now, so the collector
    sees a replayed backlog (no silence sweep on live data). `spikes`: reading numbers j at which
    air-quality device d has pm25 jump to SPIKE_PM25 for reading j + d (give each a steady
    history first, and an hour between two); `self.spikes` holds those points.
    `expected` maps (measurement, device_id, ts_ns, field) to the value sent.
    `name` goes into the device ids, so two streams in one test never share a point; `start_s`
    is the first reading's time (default: the stream ends an hour ago).
    """

    def __init__(
        self,
        mqtt_url: str,
        city: str,
        *,
        devices: int = 10,
        per_device: int = 400,
        per_message: int = 5,
        rate: float = 300.0,
        interval_s: int = 60,
        spikes: Sequence[int] = (),
        name: str = "",
        start_s: int | None = None,
        seed: int = 20261128,
    ) -> None:
        super().__init__(mqtt_url, rate)
        self.city = city
        rng = random.Random(seed)
        if start_s is None:
            start_s = int(time.time()) - per_device * interval_s - 3600
        self.start_s = start_s
        self.end_s = self.start_s + per_device * interval_s + devices
        self.expected: dict[Key, float] = {}
        self.spikes: list[Key] = []
        chunks: list[list[tuple[str, bytes]]] = []
        for kind in KINDS:
            for d in range(devices):
                device_id = f"{_PREFIX[kind]}-{name}{d:03d}"
                district = _DISTRICTS[d % len(_DISTRICTS)]
                topic = f"city/{city}/{district}/{kind}/{device_id}"
                # Device d spikes at reading j + d for each j in `spikes` (staggered devices).
                spike_at = {j + d for j in spikes} if kind == "air_quality" else set()
                readings = []
                for j in range(per_device):
                    ts = self.start_s + j * interval_s + d
                    fields = _reading(kind, d, j, rng, spike=j in spike_at)
                    readings.append({"ts": ts, **fields})
                    for field_name, value in fields.items():
                        key = (kind, device_id, ts * 1_000_000_000, field_name)
                        self.expected[key] = float(value)
                        if j in spike_at and field_name == "pm25":
                            self.spikes.append(key)
                chunks.append(
                    [
                        (topic, json.dumps(readings[i : i + per_message]).encode())
                        for i in range(0, per_device, per_message)
                    ]
                )
        # Round robin over devices: every device advances together, in order per device.
        self.messages = [message for group in zip(*chunks, strict=True) for message in group]
        self.readings = len(KINDS) * devices * per_device


def _reading(kind: str, d: int, j: int, rng: random.Random, *, spike: bool) -> dict[str, float]:
    """One reading of device d, number j: smooth, noisy, always inside the catalog's ranges."""
    if kind == "air_quality":
        pm25 = round(max(1.0, 30 + 8 * math.sin(j / 15 + d) + rng.gauss(0, 1.5)), 1)
        pm10 = round(max(2.0, 1.6 * pm25 + 5 + rng.gauss(0, 2)), 1)
        if spike:  # pm25 alone: a dust burst on one sensor channel
            pm25 = SPIKE_PM25
        return {"pm25": _within(kind, "pm25", pm25), "pm10": _within(kind, "pm10", pm10)}
    if kind == "water_level":
        level = round(120 + 25 * math.sin(j / 30 + d) + rng.gauss(0, 0.4), 1)
        return {"level_cm": _within(kind, "level_cm", level)}
    # Lamps switch on and off in blocks of 90 readings (staggered per device), dimmed in the
    # second half of each lit block; the stream's span is too short for the real night.
    phase = (j + 37 * d) % 180
    if phase < 90:
        return {"lamp_on": 0.0, "power_w": 0.0}  # dim_pct means nothing while off
    dim = 100.0 if phase < 135 else 60.0
    power = round(120 * dim / 100 + rng.gauss(0, 1.5), 1)
    return {
        "lamp_on": 1.0,
        "dim_pct": _within(kind, "dim_pct", dim),
        "power_w": _within(kind, "power_w", power),
    }


def stored(client: InfluxClient, *, skip_devices: Iterable[str] = ()) -> dict[Key, Any]:
    """Every point of the three measurements as {(measurement, device_id, ts_ns, field): value}."""
    skip = set(skip_devices)
    out: dict[Key, Any] = {}
    for kind in KINDS:
        for row in rows(client, kind):
            if row["device_id"] in skip:
                continue
            for name in CATALOG[kind].field_names:
                value = row.get(name)
                if value is not None:
                    out[(kind, row["device_id"], row["time"], name)] = value
    return out


def differences(stored_map: dict[Key, Any], expected: dict[Key, float]) -> str:
    """A short account of how two point maps differ (empty if they are equal)."""
    missing = expected.keys() - stored_map.keys()
    extra = stored_map.keys() - expected.keys()
    wrong = [k for k in expected.keys() & stored_map.keys() if stored_map[k] != expected[k]]
    if not (missing or extra or wrong):
        return ""
    return (
        f"missing {len(missing)} (e.g. {sorted(missing)[:3]}), extra {len(extra)} "
        f"(e.g. {sorted(extra)[:3]}), wrong value {len(wrong)} "
        f"(e.g. {[(k, stored_map[k], expected[k]) for k in sorted(wrong)[:3]]})"
    )


# -- the collector's metrics ----------------------------------------------------------------------


def metric(port: int, name: str) -> float:
    """A metric summed over its labels (0 if absent); NaN if the collector does not answer."""
    values = scrape(port)
    if not values:
        return math.nan
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


def wait_metric(port: int, name: str, at_least: float, timeout: float = 60) -> float:
    """Wait until a metric (summed over labels) reaches `at_least`; return its value."""
    last = [math.nan]

    def reached() -> bool:
        last[0] = metric(port, name)
        return last[0] >= at_least

    assert wait_for(reached, timeout, interval=0.05), f"{name} = {last[0]}, wanted {at_least}"
    return last[0]


def wait_subscribed(mqtt_url: str, city: str, ports: list[int], timeout: float = 30) -> None:
    """Wait until each collector's subscription delivers: the SUBACK is in, as a fact.

    Publishes zero-length retained messages (retained deletions, which the collector takes
    without a record) until every collector has received one; with a share group each probe
    goes to one member, so this keeps probing until all have had one.
    """
    before = {port: metric(port, "pantau_messages_received_total") for port in ports}
    endpoint = mqtt_endpoint(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"probe-{uuid.uuid4().hex[:10]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(metric(p, "pantau_messages_received_total") > before[p] for p in ports):
                return
            topic = f"city/{city}/probe/air_quality/probe-{uuid.uuid4().hex[:6]}"
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
            time.sleep(0.1)
        raise AssertionError(f"collectors on {ports} never received a probe")
    finally:
        client.disconnect()
        client.loop_stop()


# -- Mosquitto's $SYS counters ---------------------------------------------------------------------


class BrokerStats:
    """Mosquitto's $SYS counters (published every sys_interval, 10 s by default)."""

    TOPICS: Final = (
        "$SYS/broker/store/messages/count",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/publish/messages/dropped",
    )

    def __init__(self, mqtt_url: str) -> None:
        self.values: dict[str, int] = {}
        self.updates = 0  # periodic (not retained) updates of the store count
        self._lock = threading.Lock()
        endpoint = mqtt_endpoint(mqtt_url)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sys-{uuid.uuid4().hex[:10]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.connect(endpoint.host, endpoint.port)
        for topic in self.TOPICS:
            self._client.subscribe(topic, qos=0)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.values[message.topic] = int(message.payload)
            if message.topic == self.TOPICS[0] and not message.retain:
                self.updates += 1

    def latest(self) -> dict[str, int]:
        """The newest value of each counter (Mosquitto republishes one only when it changed)."""
        with self._lock:
            return dict(self.values)

    def until(self, ready: Callable[[dict[str, int]], bool], timeout: float = 60) -> dict[str, int]:
        """The newest values once `ready` holds for them (a few sys_intervals at most)."""
        assert wait_for(lambda: ready(self.latest()), timeout, interval=0.2), self.latest()
        return self.latest()

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


# -- line protocol as it reached InfluxDB ---------------------------------------------------------


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split at `sep` outside double quotes and not after a backslash."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_lines(body: bytes) -> Iterable[tuple[str, str, int, str]]:
    """(series key, field, ts_ns, raw value) of every field of every line of a /write body."""
    for line in body.decode().split("\n"):
        if not line or line.startswith("#"):
            continue
        series, fields, ts = _split_unescaped(line, " ")
        for pair in _split_unescaped(fields, ","):
            name, _, value = pair.partition("=")
            yield series, name, int(ts), value


def conflicting_values(bodies: Iterable[bytes]) -> dict[tuple[str, str, int], set[str]]:
    """Points (series, field, ts) that reached InfluxDB with more than one value."""
    seen: dict[tuple[str, str, int], set[str]] = collections.defaultdict(set)
    for body in bodies:
        for series, name, ts, value in parse_lines(body):
            seen[(series, name, ts)].add(value)
    return {key: values for key, values in seen.items() if len(values) > 1}


def holds_readings(body: bytes) -> bool:
    """Whether a /write body holds points of the three reading measurements."""
    return any(line.split(b",", 1)[0].decode() in KINDS for line in body.split(b"\n"))


def reading_conflicts(bodies: Iterable[bytes]) -> dict[tuple[str, str, int], set[str]]:
    """Reading points (not derived ones) that reached InfluxDB with more than one value."""
    return {k: v for k, v in conflicting_values(bodies).items() if k[0].split(",")[0] in KINDS}


# -- an InfluxDB proxy that misbehaves on purpose -------------------------------------------------


@dataclass
class ProxyWrite:
    """One /write that went through the proxy to InfluxDB."""

    body: bytes
    status: int
    mode: str
    answered: bool = True  # False: the collector never got InfluxDB's answer


@dataclass
class InfluxProxy:
    """An HTTP proxy in front of InfluxDB that records every /write it forwards.

    Modes: "pass"; "slow" (forward at once, answer `delay_s` later: the write lands, the
    collector times out); "kill" (forward the next /write that holds readings and, once
    InfluxDB answered 2xx, SIGKILL `kill_pid` before answering, then go back to "pass"); "hold"
    (a /write that holds readings waits, `held` set, until `release` is set).
    An unreachable InfluxDB is answered with 503.
    """

    upstream: str
    mode: str = "pass"
    delay_s: float = 0.0
    kill_pid: int | None = None
    writes: list[ProxyWrite] = field(default_factory=list)
    killed: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The proxy's URL, for the collector's --influx."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> InfluxProxy:
        """Serve in a daemon thread."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def bodies(self) -> list[bytes]:
        """Every /write body InfluxDB answered 2xx, in order."""
        with self._lock:
            return [w.body for w in self.writes if 200 <= w.status < 300]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        if self.mode == "hold" and handler.path.startswith("/write") and holds_readings(body):
            self.held.set()
            self.release.wait(120)
        try:
            response = httpx.request(method, self.upstream + handler.path, content=body, timeout=30)
        except httpx.HTTPError:
            answer(handler, 503, b'{"error":"upstream unreachable"}')
            return
        if not handler.path.startswith("/write"):
            answer(handler, response.status_code, response.content)
            return
        mode = self.mode
        record = ProxyWrite(body, response.status_code, mode)
        with self._lock:
            self.writes.append(record)
        if (
            mode == "kill"
            and 200 <= response.status_code < 300
            and holds_readings(body)
            and not self.killed.is_set()
        ):
            assert self.kill_pid is not None
            record.answered = False
            os.kill(self.kill_pid, signal.SIGKILL)
            self.mode = "pass"
            self.killed.set()
            return  # the collector is gone; it never learns that the write landed
        if mode == "slow":
            record.answered = False  # beyond the collector's timeout: it has given up
            time.sleep(self.delay_s)
        answer(handler, response.status_code, response.content)


def answer(handler: BaseHTTPRequestHandler, status: int, content: bytes) -> None:
    """Answer an HTTP request; a client that already left (timed out, died) is no error."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the collector timed out (or died) and left
