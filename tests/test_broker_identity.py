"""Broker identities and the secure-by-default private broker, against a real Mosquitto.

The broker `pantau services up` and `pantau demo` run: passwords and ACLs for the collector,
the API and every device, client ids bound to user names, and a packet-size limit.
"""

from __future__ import annotations

import json
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.broker_auth import CredentialStore, write_broker_files
from pantau.cli import main as pantau_main
from pantau.dev import InfluxDBService, MosquittoService, free_port
from pantau.dev.accounts import DevAccounts, provision
from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from pantau.settings import Settings
from tests.ingest_helpers import count, pantau, publish_all, running_collector, wait_for
from tests.test_broker_security import NOT_AUTHORIZED, REFUSED, connack, puback, session

pytestmark = pytest.mark.integration

WATCHER, WATCHER_PASSWORD = "pantau-api-watcher", "watcher-password"


@dataclass(frozen=True)
class DevBroker:
    """A private broker set up like `pantau services up` sets it up, and its accounts."""

    broker: MosquittoService
    accounts: DevAccounts
    city: str

    def login(self, account: str) -> tuple[str, str]:
        """A service account's user name and password (from its password file)."""
        return account, self.accounts.password(account)

    def device(self, device_id: str) -> tuple[str, str]:
        """A device's user name and password (from the credentials CSV)."""
        for line in self.accounts.devices_csv.read_text().splitlines()[1:]:
            name, username, password = line.split(",")
            if name == device_id:
                return username, password
        raise KeyError(device_id)

    def url(self, account: str | None = None) -> str:
        """The broker URL, with an account's credentials in it if one is named."""
        if account is None:
            return self.broker.url
        user, password = self.login(account)
        return self.broker.url.replace("mqtt://", f"mqtt://{user}:{password}@")

    def topic(self, device_id: str) -> str:
        return f"city/{self.city}/bobotsari/air_quality/{device_id}"


@pytest.fixture(scope="module")
def dev_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBroker]:
    root = tmp_path_factory.mktemp("devbroker")
    city = f"c{uuid.uuid4().hex[:10]}"
    fleet = Registry(
        Device(name, "air_quality", city, "bobotsari", -7.3, 109.3, 60.0)
        for name in ("dev-a", "dev-b", "dev-c")
    )
    accounts = provision(root, fleet)
    # A second API replica's account, to watch what the API would believe: it has its own
    # client id, so it does not kick pantau-api-1 off.
    store = CredentialStore.load(accounts.store)
    store.set_password(WATCHER, WATCHER_PASSWORD)
    store.save(accounts.store)
    write_broker_files(Registry.from_csv(accounts.registry), store, accounts.broker_dir)
    broker = MosquittoService(
        root, free_port(), password_file=accounts.password_file, acl_file=accounts.acl_file
    )
    try:
        broker.start()
        yield DevBroker(broker, accounts, city)
    finally:
        broker.stop()


def _reading(ts: float, value: float) -> bytes:
    return json.dumps({"ts": ts, "pm25": value}).encode()


class _Connection:
    """A paho client with its own network thread, recording CONNACKs and disconnects."""

    def __init__(self, port: int, user: str, password: str, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(60, 60)
        self.connected = threading.Event()
        self.disconnects: list[str] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port, clean_start=True)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_connect(
        self, c: mqtt.Client, u: Any, f: mqtt.ConnectFlags, reason: ReasonCode, p: Any
    ) -> None:
        if not reason.is_failure:
            self.connected.set()

    def _on_disconnect(
        self, c: mqtt.Client, u: Any, f: Any, reason: ReasonCode, p: Properties | None
    ) -> None:
        self.disconnects.append(str(reason))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- 1. identities that cannot be taken ------------------------------------------------------------


def test_a_device_cannot_take_over_the_collectors_session_and_nothing_is_lost(
    dev_broker: DevBroker, influx: InfluxDBService, influx_db: str, tmp_path: Path
) -> None:
    collector_id = dev_broker.accounts.ingest
    port = dev_broker.broker.port
    log_path = tmp_path / "collector.log"
    start = time.time() - 3600

    def collector() -> Any:
        return running_collector(
            dev_broker.url(collector_id),
            influx.url,
            influx_db,
            topic=f"city/{dev_broker.city}/+/+/+",
            client_id=collector_id,
            registry=dev_broker.accounts.registry,
            log_path=log_path,
        )

    with InfluxClient(influx.url, influx_db) as db:
        # While the collector runs, device A connects with valid credentials under the
        # collector's client id: the broker names it after its account, so both stay on.
        with collector():
            thief = _Connection(port, *dev_broker.device("dev-a"), client_id=collector_id)
            try:
                with session(port, *dev_broker.device("dev-b")) as (device, _acks):
                    for i in range(10):
                        payload = _reading(start - 60 * (i + 1), 1.0)
                        publish_all(device, [(dev_broker.topic("dev-b"), payload)])
                assert wait_for(lambda: count(db, "air_quality", "pm25") == 10, timeout=15)
                assert thief.disconnects == []
            finally:
                thief.close()
        assert "broker connection lost" not in log_path.read_text()

        # The collector is stopped; its session (and the queue in it) stays with the broker.
        # Device A connects with clean start under the collector's id, then device B publishes
        # 50 readings, each acknowledged by the broker.
        thief = _Connection(port, *dev_broker.device("dev-a"), client_id=collector_id)
        try:
            with session(port, *dev_broker.device("dev-b")) as (device, _acks):
                readings = [
                    (dev_broker.topic("dev-b"), _reading(start + 60 * (i + 1), float(i)))
                    for i in range(50)
                ]
                publish_all(device, readings)
        finally:
            thief.close()
        # Back under its own account: its session was kept, and all 50 are stored.
        with collector():
            assert wait_for(lambda: count(db, "air_quality", "pm25") >= 60, timeout=30)
            assert count(db, "air_quality", "pm25") == 60
    reconnected = [
        line for line in log_path.read_text().splitlines() if "connected to broker" in line
    ]
    assert len(reconnected) == 2 and "session_present=True" in reconnected[1].replace(" ", ""), (
        reconnected
    )
    # The broker knew the thief by its own name, never by the collector's.
    assert f"as {collector_id} " in dev_broker.broker.log_path.read_text()
    assert "u'dev-a'" in dev_broker.broker.log_path.read_text()


def test_the_collector_client_id_follows_its_account() -> None:
    settings = Settings(mqtt_url="mqtt://127.0.0.1:1", mqtt_username="pantau-ingest-7")
    assert settings.client_id == "pantau-ingest-7"
    assert settings.effective_spool_dir.name == "pantau-ingest-7"
    assert Settings(mqtt_url="mqtt://pantau-ingest-2:x@h:1").client_id == "pantau-ingest-2"
    with pytest.raises(ValueError, match="use_username_as_clientid"):
        Settings(mqtt_url="mqtt://h:1", mqtt_username="pantau-ingest-7", client_id="other")
    loose = Settings(
        mqtt_url="mqtt://h:1",
        mqtt_username="u",
        client_id="other",
        mqtt_username_is_client_id=False,
    )
    assert loose.client_id == "other"
    assert Settings(mqtt_url="mqtt://h:1").client_id.startswith("pantau-ingest-")


# -- 2. secure by default --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "topic", "allowed"),
    [
        ("dev-a", "pantau/derived/{city}/bobotsari/air_quality/dev-a/anomaly", False),
        ("dev-a", "pantau/derived/{city}/bobotsari/air_quality/dev-b/indicator", False),
        ("dev-a", "pantau/ops/ack/{city}", False),
        ("dev-a", "pantau/ops/anything", False),
        ("api", "pantau/derived/{city}/bobotsari/air_quality/dev-a/anomaly", False),
        ("ingest", "pantau/ops/ack/{city}", False),
        ("ingest", "pantau/derived/{city}/bobotsari/air_quality/dev-a/anomaly", True),
        ("api", "pantau/ops/ack/{city}", True),
    ],
)
def test_only_the_collector_writes_derived_and_only_the_api_writes_ops(
    dev_broker: DevBroker, account: str, topic: str, allowed: bool
) -> None:
    port, accounts = dev_broker.broker.port, dev_broker.accounts
    logins = {
        "ingest": dev_broker.login(accounts.ingest),
        "api": dev_broker.login(accounts.api),
        "dev-a": dev_broker.device("dev-a"),
    }
    target = topic.format(city=dev_broker.city)
    # The API account follows derived data and acks: what it would believe.
    with session(port, WATCHER, WATCHER_PASSWORD) as (watcher, watched):
        subscribed = threading.Event()
        watcher.on_subscribe = lambda *_args: subscribed.set()
        watcher.subscribe([("pantau/derived/#", 1), ("pantau/ops/#", 1)])
        assert subscribed.wait(5)
        with session(port, *logins[account]) as (client, seen):
            code = puback(client, seen, target)
        if allowed:
            assert code in (0, 0x10)
            assert wait_for(lambda: target in watched["messages"], timeout=5, interval=0.02)
        else:
            assert code == NOT_AUTHORIZED
            # A marker the API account may publish proves delivery is flowing, after the refusal.
            marker = f"pantau/ops/ack/{dev_broker.city}-marker-{uuid.uuid4().hex[:6]}"
            with session(port, *logins["api"]) as (api, api_seen):
                assert puback(api, api_seen, marker) in (0, 0x10)
            assert wait_for(lambda: marker in watched["messages"], timeout=5, interval=0.02)
            assert target not in watched["messages"]


def test_anonymous_clients_are_refused_by_the_dev_broker(dev_broker: DevBroker) -> None:
    assert connack(dev_broker.broker.port) in REFUSED
    username, password = dev_broker.login(dev_broker.accounts.ingest)
    assert connack(dev_broker.broker.port, username, password + "x") in REFUSED
    assert connack(dev_broker.broker.port, username, password) == 0


def test_services_up_generates_private_credentials_and_refuses_anonymous_clients(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    city = f"c{uuid.uuid4().hex[:8]}"
    fleet = tmp_path / "fleet.csv"
    Registry(
        Device(f"d-{i}", "air_quality", city, "bobotsari", -7.3, 109.3, 60.0) for i in range(3)
    ).write_csv(fleet)
    root = tmp_path / "svc"
    mqtt_port, influx_port = free_port(), free_port()
    flags = ["--dir", str(root)]
    ports = ["--influx-port", str(influx_port), "--registry"]
    try:
        up = runner.invoke(
            pantau_main,
            ["services", "up", *flags, "--mqtt-port", str(mqtt_port), *ports, str(fleet)],
        )
        assert up.exit_code == 0, up.output
        accounts = DevAccounts(root)
        secrets = [
            accounts.store,
            accounts.password_file,
            accounts.acl_file,
            accounts.registry,
            accounts.devices_csv,
            accounts.password_path(accounts.ingest),
            accounts.password_path(accounts.api),
        ]
        for path in secrets:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for folder in (accounts.broker_dir, accounts.credentials_dir):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        # What `eval "$(pantau services up)"` exports has no password in it.
        assert f"export PANTAU_MQTT_URL=mqtt://127.0.0.1:{mqtt_port}\n" in up.stdout
        ingest_password = accounts.password(accounts.ingest)
        assert ingest_password not in up.output
        assert f"PANTAU_MQTT_PASSWORD_FILE={accounts.password_path(accounts.ingest)}" in up.output
        # The broker: anonymous refused; each account logs in with its own password.
        assert connack(mqtt_port) in REFUSED
        assert connack(mqtt_port, accounts.ingest, ingest_password) == 0
        assert connack(mqtt_port, accounts.api, accounts.password(accounts.api)) == 0
        devices = accounts.devices_csv.read_text().splitlines()
        assert devices[0] == "device_id,username,password" and len(devices) == 4
        _device_id, username, password = devices[1].split(",")
        assert connack(mqtt_port, username, password) == 0
        # Running it again keeps every password (the broker is reloaded, not re-keyed).
        before = {path: path.read_bytes() for path in secrets[4:]}
        again = runner.invoke(pantau_main, ["services", "up", *flags, "--registry", str(fleet)])
        assert again.exit_code == 0, again.output
        assert {path: path.read_bytes() for path in secrets[4:]} == before
        assert connack(mqtt_port, accounts.ingest, ingest_password) == 0
        assert "use_username_as_clientid true" in (root / "mosquitto/mosquitto.conf").read_text()
    finally:
        runner.invoke(pantau_main, ["services", "down", *flags])


def test_a_running_anonymous_broker_is_restarted_secured_by_services_up(tmp_path: Path) -> None:
    # A broker started by an older `pantau services up` (anonymous) must not stay open.
    mqtt_port, influx_port = free_port(), free_port()
    old = MosquittoService(tmp_path, mqtt_port)
    old.start()
    runner = CliRunner()
    flags = ["--dir", str(tmp_path), "--mqtt-port", str(mqtt_port)]
    try:
        assert connack(mqtt_port) == 0
        up = runner.invoke(
            pantau_main, ["services", "up", *flags, "--influx-port", str(influx_port)]
        )
        assert up.exit_code == 0, up.output
        assert connack(mqtt_port) in REFUSED
    finally:
        runner.invoke(pantau_main, ["services", "down", "--dir", str(tmp_path)])
        old.stop()


def test_demo_style_fleet_with_per_device_credentials_reaches_the_collector(
    dev_broker: DevBroker, influx: InfluxDBService, influx_db: str
) -> None:
    accounts = dev_broker.accounts
    with running_collector(
        dev_broker.url(accounts.ingest),
        influx.url,
        influx_db,
        topic=f"city/{dev_broker.city}/+/+/+",
        client_id=accounts.ingest,
        registry=accounts.registry,
    ):
        done = pantau(
            "simulate",
            "--mqtt",
            dev_broker.url(),  # no password on the command line: each device's own login
            "--registry",
            str(accounts.registry),
            "--credentials",
            str(accounts.devices_csv),
            "--duration",
            "600",
            "--interval",
            "60",
            "--fast",
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        sent = int(done.stdout.split("messages: sent=")[1].split()[0])
        assert sent >= 27 and f"acked={sent} unacked=0" in done.stdout
        with InfluxClient(influx.url, influx_db) as db:
            assert wait_for(lambda: count(db, "air_quality", "pm25") >= sent, timeout=20)
            assert count(db, "rejected", "detail") == 0
    # Without credentials the same fleet is refused at once.
    refused = pantau(
        "simulate",
        "--mqtt",
        dev_broker.url(),
        "--registry",
        str(accounts.registry),
        "--duration",
        "60",
        "--fast",
        timeout=60,
    )
    assert refused.returncode != 0


def test_password_file_credentials_log_in(dev_broker: DevBroker, tmp_path: Path) -> None:
    # PANTAU_MQTT_USERNAME + PANTAU_MQTT_PASSWORD_FILE instead of user:password in the URL.
    accounts = dev_broker.accounts
    settings = Settings(
        mqtt_url=dev_broker.url(),
        mqtt_username=accounts.ingest,
        mqtt_password_file=accounts.password_path(accounts.ingest),
    )
    endpoint = settings.mqtt.endpoint()
    assert endpoint.password == accounts.password(accounts.ingest)
    assert endpoint.password not in repr(endpoint) and endpoint.password not in repr(settings)
    assert connack(endpoint.port, endpoint.username, endpoint.password) == 0
    missing = Settings(mqtt_url=dev_broker.url(), mqtt_password_file=tmp_path / "nope")
    with pytest.raises(ValueError, match="PANTAU_MQTT_PASSWORD_FILE"):
        missing.mqtt.endpoint()
    with pytest.raises(ValueError, match="not both"):
        Settings(mqtt_password="x", mqtt_password_file=tmp_path / "nope")


# -- 5a. message size ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])
@pytest.mark.parametrize("secured", [True, False], ids=["dev-broker", "test-broker"])
def test_a_2mb_publish_is_refused_by_the_broker(
    dev_broker: DevBroker,
    broker: MosquittoService,
    protocol: MQTTProtocolVersion,
    secured: bool,
) -> None:
    target = dev_broker.broker if secured else broker
    topic = dev_broker.topic("dev-a")
    login = dev_broker.device("dev-a") if secured else None
    watcher_login = dev_broker.login(dev_broker.accounts.ingest) if secured else None
    received: list[int] = []
    watcher = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"w-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if watcher_login:
        watcher.username_pw_set(*watcher_login)
    subscribed = threading.Event()
    watcher.on_subscribe = lambda *_args: subscribed.set()
    watcher.on_message = lambda c, u, m: received.append(len(m.payload))
    watcher.connect("127.0.0.1", target.port)
    watcher.loop_start()
    sender = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"s-{uuid.uuid4().hex[:8]}", protocol=protocol
    )
    if login:
        sender.username_pw_set(*login)
    sender.reconnect_delay_set(60, 60)
    gone = threading.Event()
    sender.on_disconnect = lambda *_args: gone.set()
    try:
        watcher.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        sender.connect("127.0.0.1", target.port)
        sender.loop_start()
        assert wait_for(sender.is_connected, timeout=5, interval=0.02)
        big = sender.publish(topic, b"x" * 2_000_000, qos=1)
        # The broker hangs up on the sender instead of taking the message.
        assert gone.wait(10), "the broker kept a client that sent 2 MB"
        assert not big.is_published()
        # A normal message from a new connection still flows, and the big one never arrived.
        with_small = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"n-{uuid.uuid4().hex[:8]}", protocol=protocol
        )
        if login:
            with_small.username_pw_set(*login)
        with_small.connect("127.0.0.1", target.port)
        with_small.loop_start()
        try:
            small = with_small.publish(topic, b'{"ts": 1732700000, "pm25": 1}', qos=1)
            small.wait_for_publish(5)
            assert wait_for(lambda: received, timeout=5, interval=0.02)
        finally:
            with_small.disconnect()
            with_small.loop_stop()
        assert received == [len(b'{"ts": 1732700000, "pm25": 1}')]
        assert "oversize packet" in target.log_path.read_text()
    finally:
        sender.disconnect()
        sender.loop_stop()
        watcher.disconnect()
        watcher.loop_stop()
