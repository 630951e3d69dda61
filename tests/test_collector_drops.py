"""What the collector cannot keep is counted: QoS 0 beyond its bound, derived messages it drops."""

from __future__ import annotations

from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest

import ingest.collector as collector_module
from ingest.collector import Collector
from ingest.derivation import Derived, DerivedMessage
from pantau.settings import Settings


def _collector() -> Collector:
    # Never connected: only the network-thread callbacks and the publish path are exercised.
    return Collector(Settings(client_id="drops-test"), cast(Any, None))


def _message(qos: int, mid: int = 1) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid, b"city/c/d/air_quality/aq-1")
    message.payload = b'{"pm25": 1}'
    message.qos = qos
    return message


def test_qos0_beyond_the_inbox_bound_is_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector_module, "_QOS0_INBOX_MAX", 3)
    collector = _collector()
    for mid in range(5):
        collector._on_message(cast(Any, None), None, _message(0, mid))
    collector._on_message(cast(Any, None), None, _message(1, 9))  # QoS 1: flow-controlled
    assert len(collector._inbox) == 4
    assert collector.metrics.qos0_dropped._value.get() == 2


def test_qos0_arriving_while_draining_is_counted_qos1_waits_for_redelivery() -> None:
    collector = _collector()
    collector._taking.clear()
    collector._on_message(cast(Any, None), None, _message(0))
    collector._on_message(cast(Any, None), None, _message(1))
    assert not collector._inbox
    assert collector.metrics.qos0_dropped._value.get() == 1


def test_derived_messages_the_client_cannot_queue_are_counted() -> None:
    collector = _collector()
    collector._client.max_queued_messages_set(2)
    live = [DerivedMessage("pantau/derived/c/_all/air_quality/_all/readings", b"{}", False, 0)]
    events = [
        DerivedMessage(f"pantau/derived/c/d/air_quality/aq-{i}/anomaly", b"{}", False)
        for i in range(5)
    ]
    # Not connected: QoS 1 messages queue up to the bound, QoS 0 ones cannot be sent at all.
    collector._publish(Derived(messages=live + events))
    assert collector.metrics.derived_dropped._value.get() == 1 + 3
