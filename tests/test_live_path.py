"""The live path: a batch's readings reach the derived topic while its write is still running."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.derived import readings_topic
from pantau.dev import free_port
from pantau.influx import InfluxClient
from pantau.settings import mqtt_endpoint
from tests.fault_helpers import InfluxProxy
from tests.ingest_helpers import count, publish_all, publisher, running_collector, scrape, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_live_readings_go_out_before_the_write_and_acks_wait_for_it(
    broker: Any, influx: Any, influx_db: str
) -> None:
    """The summary is published during the write; the message is acknowledged only after it."""
    city = f"c{uuid.uuid4().hex[:10]}"
    proxy = InfluxProxy(influx.url, mode="hold").start()
    endpoint = mqtt_endpoint(broker.url)
    summaries: list[dict[str, Any]] = []
    subscribed, arrived = threading.Event(), threading.Event()
    watcher = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"live-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        summaries.append(json.loads(message.payload))
        arrived.set()

    watcher.on_message = on_message
    watcher.on_subscribe = lambda *args: subscribed.set()
    watcher.on_connect = lambda c, *a: c.subscribe(readings_topic(city, "air_quality"), qos=1)
    watcher.connect(endpoint.host, endpoint.port)
    watcher.loop_start()
    port = free_port()
    try:
        assert subscribed.wait(30)
        with (
            running_collector(
                broker.url,
                proxy.url,
                influx_db,
                topic=f"city/{city}/+/+/+",
                # The held write must not time out into the spool while the test looks.
                env={"PANTAU_INFLUX_TIMEOUT_S": "120"},
                extra_args=["--metrics-port", str(port)],
            ),
            publisher(broker.url) as pub,
            InfluxClient(influx.url, influx_db) as stored,
        ):
            ts = time.time() - 60
            body = json.dumps({"ts": ts, "pm25": 31.5, "pm10": 40.0}).encode()
            publish_all(pub, [(f"city/{city}/kalimanah/air_quality/aq-live", body)])
            assert proxy.held.wait(60), "the collector never wrote the batch"
            assert arrived.wait(60), "no live summary while the write was held"
            assert summaries[0]["readings"][0]["device_id"] == "aq-live"
            # The write is still held: nothing stored, nothing acknowledged.
            assert count(stored, "air_quality", "pm25") == 0
            assert scrape(port).get("pantau_messages_acked_total", 0) == 0
            proxy.release.set()
            assert wait_for(lambda: count(stored, "air_quality", "pm25") == 1, 60)
            assert wait_for(lambda: scrape(port).get("pantau_messages_acked_total") == 1, 60)
    finally:
        proxy.release.set()
        watcher.disconnect()
        watcher.loop_stop()
        proxy.close()
