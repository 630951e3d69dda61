"""The private-services manager: Mosquitto, InfluxDB and `pantau services`."""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.cli import main
from pantau.dev import InfluxDBService, MosquittoService, ServiceError, free_port
from pantau.dev.mosquitto import MAX_PACKET_BYTES
from pantau.dev.process import ManagedProcess, port_accepts

# --- helpers -----------------------------------------------------------------------------


@contextmanager
def mqtt_client(service: MosquittoService) -> Iterator[mqtt.Client]:
    """A connected MQTT v5 client running its network loop in a thread."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(service.host, service.port, keepalive=30)
    client.loop_start()
    try:
        # Waits on the CONNACK (is_connected); 30 s is generous for a loaded machine.
        deadline = time.monotonic() + 30
        while not client.is_connected():
            assert time.monotonic() < deadline, "no CONNACK within 30s"
            time.sleep(0.01)
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def http(service: InfluxDBService) -> httpx.Client:
    return httpx.Client(base_url=service.url, trust_env=False, timeout=30.0)


def query(client: httpx.Client, db: str, statement: str) -> list[list[object]]:
    response = client.get("/query", params={"db": db, "q": statement})
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    series = result.get("series", [])
    return [row for s in series for row in s["values"]]


def write(client: httpx.Client, db: str, lines: str) -> None:
    response = client.post("/write", params={"db": db, "precision": "s"}, content=lines)
    assert response.status_code == 204, response.text


def create_db(client: httpx.Client, db: str) -> None:
    response = client.post("/query", data={"q": f'CREATE DATABASE "{db}"'})
    response.raise_for_status()


# --- unit tests (no daemons) -------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_accepts("127.0.0.1", port)


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    # Our own PID is alive, but it is not a mosquitto running our config.
    pid_path = tmp_path / "mosquitto.pid"
    pid_path.write_text(f"{os.getpid()}\n")
    process = ManagedProcess(
        "mosquitto",
        binary="mosquitto",
        marker=str(tmp_path / "mosquitto.conf"),
        pid_path=pid_path,
        console_log=tmp_path / "console.log",
    )
    assert process.pid() is None
    process.stop()  # Must not signal the stranger; just forgets the PID file.
    assert not pid_path.exists()


def test_mosquitto_config_never_drops_queued_messages(tmp_path: Path) -> None:
    lines = MosquittoService(tmp_path, 12345).render_config().splitlines()
    assert "listener 12345 127.0.0.1" in lines
    assert "max_queued_messages 1000000" in lines
    assert "max_queued_bytes 0" in lines
    assert f"persistence_location {tmp_path.resolve()}/mosquitto/data/" in lines
    # Packets well over the collector's payload limit are refused (deploy/ uses the same).
    assert f"max_packet_size {MAX_PACKET_BYTES}" in lines
    assert "allow_anonymous true" in lines  # the test suite's own brokers stay open
    # Mosquitto honours only the first word of a log_type line.
    assert all(len(line.split()) == 2 for line in lines if line.startswith("log_type"))


def test_influxdb_config_stays_off_default_ports(tmp_path: Path) -> None:
    text = InfluxDBService(tmp_path, 12345, rpc_port=12346).render_config()
    assert 'bind-address = "127.0.0.1:12346"' in text
    assert 'bind-address = "127.0.0.1:12345"' in text
    assert "8086" not in text
    assert "8088" not in text


def test_start_reports_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pantau.dev.mosquitto.find_binary", lambda _name: None)
    with pytest.raises(ServiceError, match="not installed"):
        MosquittoService(tmp_path, free_port()).start()


# --- integration -------------------------------------------------------------------------


@pytest.mark.integration
def test_broker_round_trip_qos1(broker: MosquittoService, unique_city: str) -> None:
    topic = f"city/{unique_city}/test/sensor/dev-1"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.put(message)

    def on_subscribe(
        _c: mqtt.Client, _u: object, _mid: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        subscribed.put(codes)

    with mqtt_client(broker) as sub, mqtt_client(broker) as pub:
        sub.on_message = on_message
        sub.on_subscribe = on_subscribe
        sub.subscribe(f"city/{unique_city}/#", qos=1)
        # Each step waits on its packet (SUBACK, PUBACK, PUBLISH); 30 s limits are generous.
        assert [c.value for c in subscribed.get(timeout=30)] == [1]  # Granted QoS 1.
        info = pub.publish(topic, b'{"v": 1}', qos=1)
        info.wait_for_publish(timeout=30)
        assert info.is_published()
        message = received.get(timeout=30)
    assert message.topic == topic
    assert message.payload == b'{"v": 1}'
    assert message.qos == 1


@pytest.mark.integration
def test_influx_ping_write_query(influx: InfluxDBService, influx_db: str) -> None:
    with http(influx) as client:
        assert client.get("/ping").status_code == 204
        write(client, influx_db, "air,city=x pm25=12.5 1700000000\n")
        rows = query(client, influx_db, "SELECT pm25, city FROM air")
    assert rows == [["2023-11-14T22:13:20Z", 12.5, "x"]]


@pytest.mark.integration
@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill"])
def test_influx_restart_keeps_data_and_port(tmp_path: Path, crash: bool) -> None:
    service = InfluxDBService(tmp_path, free_port())
    try:
        service.start()
        with http(service) as client:
            create_db(client, "keep")
            write(client, "keep", "m v=1 1700000000\nm v=2 1700000001\n")
        if crash:
            service.kill()  # The WAL is fsynced per write, so even a crash keeps the points.
        else:
            service.stop()
        assert not service.is_running()
        assert not port_accepts(service.host, service.port)
        service.start()
        with http(service) as client:
            assert query(client, "keep", "SELECT v FROM m") == [
                ["2023-11-14T22:13:20Z", 1.0],
                ["2023-11-14T22:13:21Z", 2.0],
            ]
    finally:
        service.stop()


@pytest.mark.integration
def test_broker_kill_and_restart(tmp_path: Path) -> None:
    service = MosquittoService(tmp_path, free_port())
    try:
        service.start()
        first = service.pid
        service.start()  # Idempotent: still the same process.
        assert service.pid == first
        service.kill()
        assert not service.is_running()
        service.restart()
        assert service.pid not in (None, first)
        with mqtt_client(service) as client:
            assert client.is_connected()
    finally:
        service.stop()
    assert not service.is_running()


@pytest.mark.integration
def test_start_fails_clearly_when_port_is_taken(broker: MosquittoService, tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="already in use"):
        MosquittoService(tmp_path, broker.port).start()


@pytest.mark.integration
def test_cli_up_status_down(tmp_path: Path) -> None:
    runner = CliRunner()
    mqtt_port, influx_port = free_port(), free_port()
    base = ["services"]
    flags = ["--dir", str(tmp_path)]
    pid_files = [tmp_path / "mosquitto" / "mosquitto.pid", tmp_path / "influxdb" / "influxd.pid"]
    try:
        up = runner.invoke(
            main,
            [*base, "up", *flags, "--mqtt-port", str(mqtt_port), "--influx-port", str(influx_port)],
        )
        assert up.exit_code == 0, up.output
        assert f"export PANTAU_MQTT_URL=mqtt://127.0.0.1:{mqtt_port}" in up.stdout
        assert f"export PANTAU_INFLUX_URL=http://127.0.0.1:{influx_port}" in up.stdout
        pids = [int(p.read_text()) for p in pid_files]

        again = runner.invoke(main, [*base, "up", *flags])  # Ports come from DIR now.
        assert again.exit_code == 0, again.output
        assert [int(p.read_text()) for p in pid_files] == pids

        status = runner.invoke(main, [*base, "status", *flags])
        assert status.exit_code == 0, status.output
        assert status.output.count("running") == 2
        assert f"mqtt://127.0.0.1:{mqtt_port}" in status.output

        down = runner.invoke(main, [*base, "down", *flags])
        assert down.exit_code == 0, down.output
        for pid in pids:
            # `down` also reaps them: `up` ran in this process, so they were its children.
            assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still exists"
        assert not port_accepts("127.0.0.1", mqtt_port)
        assert not port_accepts("127.0.0.1", influx_port)

        stopped = runner.invoke(main, [*base, "status", *flags])
        assert stopped.exit_code == 3, stopped.output
        assert stopped.output.count("stopped") == 2
    finally:
        runner.invoke(main, [*base, "down", *flags])
