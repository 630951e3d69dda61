"""Hostile or careless devices against a real collector, broker and InfluxDB (issue 17, 5b/5d)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from ingest.rejections import DETAIL_MAX_CHARS
from pantau.broker_auth import SERVICE_ROLES, hash_password
from pantau.dev import MosquittoService, free_port
from pantau.influx import InfluxClient
from pantau.settings import mqtt_endpoint
from tests.ingest_helpers import count, publish_all, publisher, rows, running_collector, wait_for

pytestmark = pytest.mark.integration


@contextmanager
def _client(mqtt_url: str) -> Iterator[tuple[mqtt.Client, list[Any]]]:
    """A connected clean-start MQTT v5 client (user and password from the URL, if any).

    Collects what it receives as (topic, payload, retain).
    """
    endpoint = mqtt_endpoint(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"probe-{uuid.uuid4().hex[:10]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    got: list[Any] = []
    connected = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, f: Any, reason: ReasonCode, p: Any) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload), bool(m.retain)))
    client.connect(endpoint.host, endpoint.port, clean_start=True)
    client.loop_start()
    try:
        assert connected.wait(5), f"{endpoint.username or 'anonymous'} could not connect"
        yield client, got
    finally:
        client.disconnect()
        client.loop_stop()


@contextmanager
def _subscriber(mqtt_url: str, *filters: str) -> Iterator[tuple[mqtt.Client, list[Any]]]:
    """A fresh client subscribed to `filters` (the SUBACK is in)."""
    with _client(mqtt_url) as (client, got):
        subscribed = threading.Event()
        client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        client.subscribe([(f, 1) for f in filters])
        assert subscribed.wait(5), "no SUBACK"
        yield client, got


def retained_on(mqtt_url: str, topic_filter: str) -> list[tuple[str, bytes]]:
    """The retained messages the broker holds under `topic_filter`, as a new subscriber sees them.

    The broker sends retained messages right after the SUBACK; a marker published afterwards on
    a private topic arrives after them, so once it is in, nothing retained is still on its way.
    """
    marker = f"probe/{uuid.uuid4().hex}"
    with _subscriber(mqtt_url, topic_filter, marker) as (client, got):
        client.publish(marker, b"m", qos=1)
        assert wait_for(lambda: any(t == marker for t, _, _ in got), timeout=5, interval=0.01)
        return [(t, p) for t, p, retain in got if retain and t != marker]


def publish_retained(mqtt_url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish each message at QoS 1 with the retain flag, acknowledged by the broker."""
    with _client(mqtt_url) as (client, _):
        infos = [client.publish(t, p, qos=1, retain=True) for t, p in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()


def stored(influx: InfluxClient) -> tuple[int, list[str]]:
    """Stored air-quality readings, and the reasons of the rejections, sorted."""
    reasons = sorted(row["reason"] for row in rows(influx, "rejected"))
    return count(influx, "air_quality", "pm25"), reasons


def test_a_huge_bad_value_gives_a_bounded_detail_in_influxdb_and_the_log(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    topic = f"city/{unique_city}/bobotsari/air_quality/aq-1"
    huge = "x" * 900_000
    messages = [
        (topic, json.dumps({"ts": huge, "pm25": 1.0}).encode()),  # bad_timestamp quotes ts
        (topic, json.dumps({"device_id": "d" * 900_000, "ts": time.time(), "pm25": 1}).encode()),
    ]
    log_path = tmp_path / "collector.log"
    with (
        InfluxClient(influx.url, influx_db) as client,
        running_collector(
            broker.url, influx.url, influx_db, topic=f"city/{unique_city}/#", log_path=log_path
        ),
        publisher(broker.url) as pub,
    ):
        publish_all(pub, messages)
        assert wait_for(lambda: len(rows(client, "rejected")) >= 2, timeout=30), log_path.read_text(
            errors="replace"
        )[-2000:]
        got = {row["reason"]: row for row in rows(client, "rejected")}
    assert set(got) == {"bad_timestamp", "device_mismatch"}, got.keys()
    for row in got.values():
        assert len(row["detail"]) <= DETAIL_MAX_CHARS, len(row["detail"])
        assert row["detail"].endswith(" chars]"), row["detail"][-40:]
        assert len(row["payload"]) <= 1024 * 4
    assert got["bad_timestamp"]["detail"].startswith("ts 'xxx")
    lines = log_path.read_text(errors="replace").splitlines()
    logged = [line for line in lines if "msg=rejected" in line]
    assert len(logged) == 2, lines[-5:]
    assert all(len(line) <= 2 * DETAIL_MAX_CHARS + 400 for line in logged), [
        len(line) for line in logged
    ]
    assert max(map(len, lines)) <= 4096


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_retained_readings_are_taken_once_then_cleared(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path, shared: bool
) -> None:
    """A device's retained reading is stored (or rejected) once and cleared from the broker.

    Before the fix, the broker kept it and sent it again at every collector (re)subscribe: a bad
    one became a new rejection each time.
    """
    city = unique_city
    good = f"city/{city}/bobotsari/air_quality/aq-1"
    bad = f"city/{city}/bobotsari/air_quality/aq-2"
    live = f"city/{city}/bobotsari/air_quality/aq-3"
    t = time.time() - 60
    client_id = f"test-{uuid.uuid4().hex[:10]}"
    # Store-only replicas: a share group on Mosquitto (round-robin) refuses processors.
    extra = ["--share-group", f"g{uuid.uuid4().hex[:6]}", "--no-processors"] if shared else []
    log_path = tmp_path / "collector.log"

    def collector() -> Any:
        return running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{city}/#",
            client_id=client_id,
            log_path=log_path,
            extra_args=extra,
        )

    def logs() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    # Retained before the collector's session exists: it gets them with its first subscription.
    publish_retained(
        broker.url,
        [(good, json.dumps({"ts": t, "pm25": 12.5}).encode()), (bad, b'{"ts": 1, "pm25": ')],
    )
    assert len(retained_on(broker.url, f"city/{city}/#")) == 2
    with InfluxClient(influx.url, influx_db) as client:
        with collector():
            assert wait_for(lambda: stored(client) == (1, ["malformed_json"]), 30), logs()
            # Retained while the collector runs: a live message, its retain flag as published.
            publish_retained(broker.url, [(live, json.dumps({"ts": t + 1, "pm25": 3.0}).encode())])
            assert wait_for(lambda: stored(client)[0] == 2, 30), logs()
            assert wait_for(lambda: not retained_on(broker.url, f"city/{city}/#"), 30), logs()
            # The clears come back to a shared subscriber as empty retained messages: no
            # `empty_payload` rejection. A reading published after the clears lands after them.
            with publisher(broker.url) as pub:
                publish_all(pub, [(good, json.dumps({"ts": t + 2, "pm25": 1.0}).encode())])
            assert wait_for(lambda: stored(client)[0] == 3, 30), logs()
            assert stored(client) == (3, ["malformed_json"])
        # A restart resumes the session: nothing is delivered, stored or rejected again.
        with collector():
            with publisher(broker.url) as pub:
                publish_all(pub, [(good, json.dumps({"ts": t + 3, "pm25": 1.0}).encode())])
            assert wait_for(lambda: stored(client)[0] == 4, 30), logs()
            assert stored(client) == (4, ["malformed_json"])
            assert not retained_on(broker.url, f"city/{city}/#")
    assert "empty_payload" not in logs()


# The shipped collector role, and the same without the line the clear needs.
_CLEAR_ACL = "topic write city/#"
_INGEST_ACL = SERVICE_ROLES["ingest"]
assert _CLEAR_ACL in _INGEST_ACL


@pytest.mark.parametrize("may_clear", [True, False], ids=["with-write", "without-write"])
def test_retained_readings_under_acls(
    influx: Any, influx_db: str, unique_city: str, tmp_path: Path, may_clear: bool
) -> None:
    """With passwords and ACLs: the clear needs `topic write city/#` for the collector account.

    Without it the broker refuses the clear (logged as such, the retained copy stays), and the
    resumed session still gets no second copy: nothing is rejected again.
    """
    city = unique_city
    topic = f"city/{city}/bobotsari/air_quality/aq-1"
    passwords = {"aq-1": "dev-pw", "pantau-ingest": "ingest-pw", "watcher": "watch-pw"}
    (tmp_path / "passwd").write_text(
        "".join(f"{user}:{hash_password(pw)}\n" for user, pw in passwords.items())
    )
    ingest_acl = _INGEST_ACL if may_clear else tuple(a for a in _INGEST_ACL if a != _CLEAR_ACL)
    (tmp_path / "acl").write_text(
        f"user aq-1\ntopic write {topic}\n\n"
        "user pantau-ingest\n" + "\n".join(ingest_acl) + "\n\n"
        "user watcher\ntopic read city/#\ntopic readwrite probe/#\n"
    )
    broker = MosquittoService(
        tmp_path / "broker",
        free_port(),
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
    )

    def url(user: str) -> str:
        return f"mqtt://{user}:{passwords[user]}@127.0.0.1:{broker.port}"

    log_path = tmp_path / "collector.log"

    def collector() -> Any:
        return running_collector(
            url("pantau-ingest"),
            influx.url,
            influx_db,
            topic=f"city/{city}/#",
            client_id="pantau-ingest",
            log_path=log_path,
        )

    def logs() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    t = time.time() - 60
    broker.start()
    try:
        publish_retained(url("aq-1"), [(topic, b"not json")])
        with InfluxClient(influx.url, influx_db) as client:
            assert retained_on(url("watcher"), f"city/{city}/#") == [(topic, b"not json")]
            with collector():
                assert wait_for(lambda: stored(client) == (0, ["malformed_json"]), 30), logs()
                if may_clear:
                    assert wait_for(lambda: not retained_on(url("watcher"), "city/#"), 30), logs()
                else:
                    refused = "broker refused a publish"
                    assert wait_for(lambda: refused in log_path.read_text(), 30), logs()
                    assert retained_on(url("watcher"), "city/#") == [(topic, b"not json")]
            with collector():
                publish_retained(url("aq-1"), [(topic, json.dumps({"ts": t, "pm25": 1}).encode())])
                assert wait_for(lambda: stored(client)[0] == 1, 30), logs()
                assert stored(client) == (1, ["malformed_json"])
                if may_clear:
                    assert wait_for(lambda: not retained_on(url("watcher"), "city/#"), 30), logs()
    finally:
        broker.stop()
