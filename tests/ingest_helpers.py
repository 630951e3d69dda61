"""Shared pieces of the ingest integration tests: run a collector, publish, query."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingest.influx import InfluxClient
from ingest.settings import mqtt_endpoint

PANTAU = str(Path(sys.executable).with_name("pantau"))


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
    extra_args: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`pantau ingest` as a real process; SIGTERM on exit (the test checks the exit itself)."""
    args = [PANTAU, "ingest", "--mqtt", mqtt_url, "--influx", influx_url, "--db", db]
    args += ["--topic", topic, "--client-id", client_id or f"test-{uuid.uuid4().hex[:10]}"]
    if registry is not None:
        args += ["--registry", str(registry)]
    args += extra_args or []
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    full_env.update(env or {})
    log = log_path.open("wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(args, env=full_env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log_path:
            log.close()  # type: ignore[union-attr]


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
