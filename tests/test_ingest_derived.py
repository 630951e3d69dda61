"""Processors wired into ingest: anomalies and indicators in InfluxDB and on derived topics."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from pantau.settings import mqtt_endpoint
from processors.indicators import ispu_index
from tests.ingest_helpers import (
    SHUTDOWN_WAIT_S,
    publish_all,
    publisher,
    rows,
    running_collector,
    wait_for,
)

pytestmark = pytest.mark.integration


# Generous: the call returns as soon as `want` arrives; the limit only bounds a failure.
def retained(mqtt_url: str, topic_filter: str, want: str, timeout: float = 60.0) -> dict[str, Any]:
    """Retained messages a fresh subscriber gets, waiting until `want` is among them."""
    endpoint = mqtt_endpoint(mqtt_url)
    got: dict[str, Any] = {}
    arrived = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"r-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        # Retained, or (if it was published while we subscribed) live: the newest state.
        if m.retain or m.topic == want:
            got[m.topic] = json.loads(m.payload)
            if m.topic == want:
                arrived.set()

    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        arrived.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_anomalies_and_indicators_are_stored_and_published(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    city = unique_city
    registry = Registry(
        [
            Device(
                "wl-1",
                "water_level",
                city,
                "kemangkon",
                -7.45,
                109.3,
                300.0,
                waspada_cm=150.0,
                siaga_cm=250.0,
                awas_cm=350.0,
                river="Klawing",
            ),
            Device("aq-1", "air_quality", city, "bobotsari", -7.3, 109.3, 3600.0),
        ]
    )
    path = tmp_path / "registry.csv"
    registry.write_csv(path)
    start = time.time() - 48 * 3600
    messages = []
    # A gauge rising through Waspada into Siaga in its last hour.
    for i in range(40):
        level = 100.0 + (i - 28) * 15.0 if i >= 28 else 100.0 + (i % 2)
        messages.append(
            (
                f"city/{city}/kemangkon/water_level/wl-1",
                json.dumps({"ts": start + 40 * 3600 + i * 300, "level_cm": level}).encode(),
            )
        )
    # An air station with a day of PM readings and one spike.
    for h in range(30):
        pm25 = 30.0 + (h % 3) if h != 25 else 900.0
        messages.append(
            (
                f"city/{city}/bobotsari/air_quality/aq-1",
                json.dumps({"ts": start + h * 3600, "pm25": pm25, "pm10": 50.0}).encode(),
            )
        )
    spool = tmp_path / "spool"
    with (
        InfluxClient(influx.url, influx_db) as client,
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{city}/#",
            registry=path,
            spool_dir=spool,
            log_path=tmp_path / "c.log",
        ) as collector,
        publisher(broker.url) as pub,
    ):
        publish_all(pub, messages)  # running_collector returned on the SUBACK: no sleep

        def derived_stored() -> bool:
            # The gauge's last batch is in (Siaga): its retained indicator is final by then.
            gauges = [r for r in rows(client, "indicator") if r["device_id"] == "wl-1"]
            return (
                bool(rows(client, "anomaly"))
                and len(rows(client, "indicator")) >= 2
                and any(r.get("flood_status") == "Siaga" for r in gauges)
            )

        # Rows in InfluxDB are the fact; a generous limit for a loaded machine.
        assert wait_for(derived_stored, 120), (tmp_path / "c.log").read_text()[-2000:]
        anomalies = rows(client, "anomaly")
        spikes = [a for a in anomalies if a["detector"] == "spike"]
        assert [(a["device_id"], a["field"], a["value"]) for a in spikes] == [
            ("aq-1", "pm25", 900.0)
        ]
        assert spikes[0]["time"] == round((start + 25 * 3600) * 1e6) * 1000
        assert spikes[0]["kept_out"] == "ispu,aqi"  # the indicators it was kept out of
        indicators = {r["device_id"]: r for r in rows(client, "indicator")}
        assert indicators["wl-1"]["flood_status"] == "Siaga"  # 265 cm: past Siaga at 250
        assert indicators["wl-1"]["rate_cm_h"] == pytest.approx(180.0, rel=0.01)
        # The 24-hour means of hours 6..29 (the newest 24) without the spike at hour 25:
        # indicators use only readings not flagged as faults.
        day = [30.0 + (h % 3) for h in range(6, 30) if h != 25]
        expected = ispu_index({"pm25": [sum(day) / len(day)], "pm10": [50.0]})
        assert indicators["aq-1"]["ispu"] == expected.reported[0]
        assert indicators["aq-1"]["ispu_category"] == expected.category[0]
        topic = f"pantau/derived/{city}/kemangkon/water_level/wl-1/indicator"
        # A fresh subscriber (a new API replica, say) learns the current state at once.
        published = retained(broker.url, f"pantau/derived/{city}/+/+/+/indicator", want=topic)
        gauge = published[topic]
        assert gauge["flood_status"] == "Siaga"
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(SHUTDOWN_WAIT_S) == 0  # drain deadline + 20 s: a bounded exit
    assert (spool / "processors.npz").exists()  # the state survives a restart
