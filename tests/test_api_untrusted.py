"""The API treats the broker as untrusted input: against a real broker, InfluxDB and `pantau api`.

Anything may be published on `pantau/derived/...` by whoever can reach the broker. Messages that
do not fit the derived-message contract are rejected and counted by reason, never fatal: the
live feed keeps flowing and the answers stay 200. What the broker can make the API hold is
bounded. Hostile messages are published straight onto the derived topics (no collector needed).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pantau.registry import Device, Registry
from tests.api_helpers import ApiProcess, running_api
from tests.conftest import influx_admin
from tests.ingest_helpers import publish_all, publisher, wait_for

pytestmark = pytest.mark.integration

XSS = "<img src=x onerror=alert(1)>"


@dataclass
class Stack:
    """An API following one city, with a registry of that city's devices."""

    city: str
    db: str
    registry: Path
    api: ApiProcess
    mqtt_url: str
    influx_url: str


def derived(city: str, district: str, kind: str, device: str, what: str) -> str:
    return f"pantau/derived/{city}/{district}/{kind}/{device}/{what}"


def batch_topic(city: str, kind: str) -> str:
    return derived(city, "_all", kind, "_all", "readings")


def summary(device: str, district: str, ts: float, **values: float) -> dict[str, Any]:
    return {"ts": ts, "device_id": device, "district": district, "readings": 1, "values": values}


def nested(depth: int) -> str:
    """A JSON value nested `depth` levels deep (orjson parses it, but cannot encode it again)."""
    return '{"a":' * (depth - 1) + "[1]" + "}" * (depth - 1)


def metric(api: ApiProcess, name: str, **labels: str) -> float:
    """A sample's value from the API's /metrics (0 if it is not there)."""
    with api.client("read") as http:
        text = http.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def publish(mqtt_url: str, messages: list[tuple[str, bytes]], *, retain: bool = False) -> None:
    with publisher(mqtt_url) as pub:
        if not retain:
            publish_all(pub, messages)
            return
        for topic, payload in messages:
            info = pub.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(10)
            assert info.is_published()


@pytest.fixture(scope="module")
def stack(broker: Any, influx: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    city = f"c{uuid.uuid4().hex[:10]}"
    db = f"t_{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("untrusted")
    influx_admin(influx, f'CREATE DATABASE "{db}"')
    path = folder / "registry.csv"
    Registry(
        [
            Device("aq-1", "air_quality", city, "bobotsari", -7.3, 109.3, 60.0),
            Device("aq-2", "air_quality", city, "kalimanah", -7.4, 109.4, 60.0),
        ]
    ).write_csv(path)
    try:
        with running_api(broker.url, influx.url, db, city=city, registry=path) as api:
            yield Stack(city, db, path, api, broker.url, influx.url)
    finally:
        influx_admin(influx, f'DROP DATABASE "{db}"')


class SseReader:
    """A live-feed client over SSE, collecting the events of every frame in a thread."""

    def __init__(self, api: ApiProcess, **params: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(api, params), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), api.log()

    def _read(self, api: ApiProcess, params: dict[str, str]) -> None:
        headers = {"Authorization": f"Bearer {api.tokens['read']}"}
        with httpx.stream(
            "GET", f"{api.url}/api/v1/feed/sse", params=params, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200
            self.connected.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events += json.loads(line[6:])["events"]
                if self._stop.is_set():
                    return

    def close(self) -> None:
        self._stop.set()


def test_a_300_deep_indicator_is_rejected_and_the_feed_keeps_flowing(stack: Stack) -> None:
    api, city = stack.api, stack.city
    reader = SseReader(api, types="reading,indicator", kind="air_quality")
    deep_topic = derived(city, "bobotsari", "air_quality", "aq-1", "indicator")
    deep = f'{{"ts": {time.time()}, "ispu": 80, "ispu_category": {nested(300)}}}'.encode()
    try:
        publish(stack.mqtt_url, [(deep_topic, deep)])
        rejected = {"reason": "indicator_value"}
        assert wait_for(
            lambda: metric(api, "pantau_api_derived_rejected_total", **rejected) >= 1, 10
        ), api.log()
        # The feed goes on: a later reading reaches the live client.
        reading = summary("aq-1", "bobotsari", time.time(), pm25=42.5)
        publish(
            stack.mqtt_url,
            [(batch_topic(city, "air_quality"), json.dumps({"readings": [reading]}).encode())],
        )
        assert wait_for(
            lambda: any(e["device_id"] == "aq-1" and e["type"] == "reading" for e in reader.events),
            10,
        ), api.log()
    finally:
        reader.close()
    with api.client("read") as http:
        assert http.get("/api/v1/indicators").status_code == 200
        device = http.get("/api/v1/devices/aq-1")
        assert device.status_code == 200
        assert device.json()["indicators"] is None

    # Retained, it is what a fresh replica learns on connect: rejected there too.
    try:
        publish(stack.mqtt_url, [(deep_topic, deep)], retain=True)
        with running_api(
            stack.mqtt_url,
            stack.influx_url,
            stack.db,
            city=city,
            registry=stack.registry,
            tokens_file=api.log_path.parent / "tokens.json",
        ) as second:
            second = ApiProcess(second.url, api.token, api.tokens, second.log_path, second.process)
            assert wait_for(
                lambda: metric(second, "pantau_api_derived_rejected_total", **rejected) >= 1, 10
            ), second.log()
            with second.client("read") as http:
                assert http.get("/api/v1/indicators").status_code == 200
                assert http.get("/api/v1/devices/aq-1").status_code == 200
                assert http.get("/health/ready").status_code == 200
    finally:
        publish(stack.mqtt_url, [(deep_topic, b"")], retain=True)  # clears the retained copy


def test_an_anomaly_with_an_unknown_detector_or_severity_is_rejected(stack: Stack) -> None:
    api, city = stack.api, stack.city
    topic = derived(city, "kalimanah", "air_quality", "aq-2", "anomaly")
    now = time.time()
    hostile = [
        {"ts": now - 30, "detector": XSS, "field": "pm25", "severity": "critical"},
        {"ts": now - 20, "detector": "spike", "field": "pm25", "severity": XSS},
        {"ts": now - 15, "detector": "spike", "field": XSS, "severity": "warning"},
    ]
    genuine = {"ts": now - 10, "detector": "spike", "field": "pm25", "severity": "warning"}
    publish(stack.mqtt_url, [(topic, json.dumps(m).encode()) for m in [*hostile, genuine]])

    def anomalies() -> list[dict[str, Any]]:
        with api.client("read") as http:
            found: list[dict[str, Any]] = http.get("/api/v1/devices/aq-2").json()["anomalies"]
        return found

    # Published in order on one connection: once the genuine one is in, the others were seen.
    assert wait_for(lambda: any(a["detector"] == "spike" for a in anomalies()), 10), api.log()
    assert [(a["detector"], a["field"], a["severity"]) for a in anomalies()] == [
        ("spike", "pm25", "warning")
    ]
    for reason in ("detector", "severity", "field"):
        assert metric(api, "pantau_api_derived_rejected_total", reason=reason) >= 1, reason
    assert "derived message rejected" in api.log_path.read_text()


def test_with_a_registry_only_its_devices_are_believed(stack: Stack) -> None:
    api, city = stack.api, stack.city
    now = time.time()
    readings = [
        summary("ghost-1", "bobotsari", now, pm25=1.0),  # not in the registry
        summary("aq-2", "bobotsari", now, pm25=2.0),  # registered in kalimanah
        summary("aq-1", "bobotsari", now, pm25=3.0),
    ]
    wrong_kind = summary("aq-1", "bobotsari", now, level_cm=100.0)
    publish(
        stack.mqtt_url,
        [
            (batch_topic(city, "air_quality"), json.dumps({"readings": readings}).encode()),
            (batch_topic(city, "water_level"), json.dumps({"readings": [wrong_kind]}).encode()),
        ],
    )
    for reason in ("unknown_device", "device_place", "device_kind"):
        assert wait_for(
            lambda reason=reason: (
                metric(api, "pantau_api_derived_rejected_total", reason=reason) >= 1
            ),
            10,
        ), (reason, api.log())
    with api.client("read") as http:
        devices = {d["device_id"]: d for d in http.get("/api/v1/devices").json()["devices"]}
    assert set(devices) == {"aq-1", "aq-2"}
    assert devices["aq-2"]["district"] == "kalimanah"
    assert devices["aq-1"]["kind"] == "air_quality"


def test_fake_devices_beyond_the_bound_are_refused_and_counted(
    broker: Any, influx: Any, influx_db: str, unique_city: str
) -> None:
    """Without a registry any well-formed device is believed, but only so many of them."""
    env = {"PANTAU_API_MAX_UNREGISTERED_DEVICES": "5"}
    with running_api(broker.url, influx.url, influx_db, city=unique_city, env=env) as api:
        now = time.time()
        fakes = [summary(f"fake-{i:02d}", "anywhere", now, pm25=float(i)) for i in range(20)]
        publish(
            broker.url,
            [(batch_topic(unique_city, "air_quality"), json.dumps({"readings": fakes}).encode())],
        )
        assert wait_for(
            lambda: metric(api, "pantau_api_state_refused_total", part="devices") == 15, 10
        ), api.log()
        assert metric(api, "pantau_api_derived_rejected_total", reason="devices_full") == 15
        assert metric(api, "pantau_api_state_size", part="unregistered_devices") == 5
        with api.client("read") as http:
            devices = http.get("/api/v1/devices").json()["devices"]
        assert sorted(d["device_id"] for d in devices) == [f"fake-{i:02d}" for i in range(5)]
        # Known ones still update; the bound refuses only new ones.
        again = summary("fake-00", "anywhere", now + 1, pm25=99.0)
        publish(
            broker.url,
            [(batch_topic(unique_city, "air_quality"), json.dumps({"readings": [again]}).encode())],
        )
        with api.client("read") as http:
            assert wait_for(
                lambda: (
                    http.get("/api/v1/devices/fake-00").json()["latest"]["values"]["pm25"] == 99.0
                ),
                10,
            ), api.log()
