"""Shared pieces of the ingest integration tests: run a collector, publish, query."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.influx import InfluxClient
from pantau.settings import Settings, mqtt_endpoint

PANTAU = str(Path(sys.executable).with_name("pantau"))
# How long a test waits for a collector to exit after SIGTERM: clearly longer than its drain
# deadline (the default; tests never set PANTAU_SHUTDOWN_TIMEOUT_S), so a loaded machine that
# drains slowly is not mistaken for a collector that hangs.
SHUTDOWN_WAIT_S: float = float(Settings.model_fields["shutdown_timeout_s"].default) + 20.0
# The collector's log lines after the SUBACK of its first subscription (or a refusal, or a
# partition with nothing to subscribe): from then on the broker routes readings to its session.
_SUBSCRIBED = re.compile(rb"\bmsg=subscribed(?: |$)", re.MULTILINE)
_REFUSED = b'msg="broker refused the subscription"'
_NOTHING_TO_SUBSCRIBE = b"nothing to subscribe"


def terminate(process: subprocess.Popen[bytes], timeout: float = SHUTDOWN_WAIT_S) -> None:
    """SIGTERM a process if it still runs; SIGKILL it if it has not exited within `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_collector(
    mqtt_url: str,
    influx_url: str,
    db: str,
    *,
    topic: str,
    client_id: str | None = None,
    registry: Path | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    spool_dir: Path | None = None,
    extra_args: list[str] | None = None,
    wait_connected: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """`pantau ingest` as a real process; SIGTERM on exit (the test checks the exit itself)."""
    args = [PANTAU, "ingest", "--mqtt", mqtt_url, "--influx", influx_url, "--db", db]
    args += ["--topic", topic, "--client-id", client_id or f"test-{uuid.uuid4().hex[:10]}"]
    if registry is not None:
        args += ["--registry", str(registry)]
    spool = spool_dir or Path(tempfile.mkdtemp(prefix="pantau-spool-"))
    args += ["--spool-dir", str(spool)]
    args += extra_args or []
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    full_env.update(env or {})
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="pantau-log-")) / "collector.log"
    log = log_path.open("ab")
    # The log may be appended to by an earlier run: only lines of this run count.
    offset = log.tell()
    process = subprocess.Popen(args, env=full_env, stdout=log, stderr=log)
    try:
        if wait_connected:
            # Publishing before the broker has acknowledged the subscription (SUBACK) would
            # lose messages: wait for the collector's "subscribed" line, written on the SUBACK.
            def ours() -> bytes:
                return log_path.read_bytes()[offset:]

            def subscribed() -> bool:
                text = ours()
                return (
                    process.poll() is not None
                    or _SUBSCRIBED.search(text) is not None
                    or _REFUSED in text
                    or _NOTHING_TO_SUBSCRIBE in text
                )

            # Generous: a loaded 2-core machine takes seconds to start Python and connect.
            assert wait_for(subscribed, timeout=60, interval=0.05), log_path.read_text()[-2000:]
            assert process.poll() is None, log_path.read_text()[-2000:]
            assert _REFUSED not in ours(), log_path.read_text()[-2000:]
        yield process
    finally:
        terminate(process)
        log.close()


@contextmanager
def publisher(mqtt_url: str) -> Iterator[mqtt.Client]:
    """A connected QoS 1 publisher (MQTT v5)."""
    endpoint = mqtt_endpoint(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"pub-{uuid.uuid4().hex[:10]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(
    client: mqtt.Client, messages: list[tuple[str, bytes]], timeout: float = 60
) -> None:
    """Publish at QoS 1 and wait until the broker has acknowledged every message."""
    deadline = time.monotonic() + timeout
    infos: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()

    def settle(info: mqtt.MQTTMessageInfo) -> None:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "broker did not acknowledge a publish in time"

    for topic, payload in messages:
        if len(infos) >= 30_000:  # packet ids wrap at 65,535
            settle(infos.popleft())
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        settle(info)


def wait_for(predicate: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def count(influx: InfluxClient, measurement: str, field: str, where: str = "") -> int:
    """Number of points with `field` in a measurement."""
    series = influx.query(f'SELECT count("{field}") FROM "{measurement}" {where}')
    return int(series[0]["values"][0][1]) if series else 0


def rows(influx: InfluxClient, measurement: str) -> list[dict[str, Any]]:
    """Every point of a measurement as dicts (time in ns)."""
    out: list[dict[str, Any]] = []
    for series in influx.query(f'SELECT * FROM "{measurement}"'):
        columns = series["columns"]
        out.extend(dict(zip(columns, values, strict=True)) for values in series["values"])
    return out


class PacedPublisher:
    """Known messages published at a fixed rate from a thread, QoS 1, riding out broker restarts.

    The publisher keeps a persistent MQTT v5 session and paho's own queue, like a real gateway.
    Subclasses fill `messages` (and what they expect stored) before `start()`.
    """

    def __init__(self, mqtt_url: str, rate: float) -> None:
        self.mqtt_url = mqtt_url
        self.rate = rate
        self.messages: list[tuple[str, bytes]] = []
        self.published = 0  # handed to the client
        self.acked = 0  # acknowledged by the broker (PUBACK)
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)
        self._done = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> Self:
        """Begin publishing in the background."""
        self._thread.start()
        return self

    def progress(self) -> float:
        """Share of messages handed to the client so far."""
        return self.published / len(self.messages)

    def wait_progress(self, share: float, timeout: float = 60) -> None:
        """Block until `share` of the stream is published."""
        assert wait_for(lambda: self.progress() >= share, timeout, interval=0.02), self.progress()

    def join(self, timeout: float = 180) -> None:
        """Wait until the broker has acknowledged every message."""
        assert self._done.wait(timeout), f"stream stuck at {self.progress():.0%}"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        endpoint = mqtt_endpoint(self.mqtt_url)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"stream-{uuid.uuid4().hex[:10]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.2, 1)
        try:
            client.connect(endpoint.host, endpoint.port, clean_start=False)
            client.loop_start()
            infos: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
            began = time.monotonic()

            def settle() -> None:
                while infos and infos[0].is_published():
                    infos.popleft()
                    self.acked += 1

            for n, (topic, payload) in enumerate(self.messages):
                delay = began + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                settle()
                while len(infos) >= 20_000:  # packet ids wrap at 65,535
                    time.sleep(0.01)
                    settle()
                info = client.publish(topic, payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    # Broker away: paho keeps a QoS 1 message queued and sends it after the
                    # reconnect; track its completion like any other.
                    info.rc = mqtt.MQTT_ERR_SUCCESS
                infos.append(info)
                self.published = n + 1
            deadline = time.monotonic() + 120
            while infos and time.monotonic() < deadline:
                settle()
                time.sleep(0.02)
            assert not infos, f"{len(infos)} publishes never acknowledged by the broker"
        except BaseException as exc:  # surfaced by join()
            self.error = exc
        finally:
            client.disconnect()
            client.loop_stop()
            self._done.set()


class Stream(PacedPublisher):
    """A known stream of air-quality readings; `expected` holds every point it publishes."""

    def __init__(
        self,
        mqtt_url: str,
        city: str,
        *,
        readings: int = 50_000,
        per_message: int = 5,
        rate: float = 1000.0,
        devices: int = 100,
    ) -> None:
        super().__init__(mqtt_url, rate)
        start = time.time() - 6 * 3600
        self.expected: dict[tuple[str, int], float] = {}
        for first in range(0, readings, per_message):
            device = (first // per_message) % devices
            device_id = f"aq-{device:04d}"
            topic = f"city/{city}/d{device % 18:02d}/air_quality/{device_id}"
            batch = []
            for i in range(first, min(first + per_message, readings)):
                ts = round(start + i * 0.25, 3)
                value = round((i * 7919) % 5000 / 10.0, 1)
                batch.append({"ts": ts, "pm25": value})
                self.expected[(device_id, round(ts * 1e6) * 1000)] = value
            self.messages.append((topic, json.dumps(batch).encode()))


def stored_points(influx: InfluxClient) -> dict[tuple[str, int], float]:
    """Every air_quality point as {(device_id, ts_ns): pm25}."""
    out: dict[tuple[str, int], float] = {}
    for row in rows(influx, "air_quality"):
        out[(row["device_id"], row["time"])] = row["pm25"]
    return out


def scrape(port: int) -> dict[str, float]:
    """The collector's Prometheus metrics as {name{labels}: value}; empty if it is not up."""
    try:
        # Generous: a scrape is a fact to wait on, and a busy collector may answer slowly.
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metrics[name] = float(value)
    return metrics


def pantau(
    *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `pantau` command with no PANTAU_* variables from the outside."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    full_env.update(env or {})
    return subprocess.run(
        [PANTAU, *args], capture_output=True, text=True, timeout=timeout, check=False, env=full_env
    )
