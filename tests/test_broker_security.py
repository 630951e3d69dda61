"""Broker security against a real Mosquitto: passwords, per-device ACLs, revocation and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
import subprocess
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

from api.broker import BrokerLink
from api.livestate import LiveState
from pantau.broker_auth import (
    ACL_NAME,
    PASSWORD_NAME,
    CredentialStore,
    hash_password,
    render_acl,
    verify_password,
)
from pantau.cli import main as pantau_main
from pantau.dev import InfluxDBService, MosquittoService, free_port
from pantau.dev.mosquitto import TlsListener
from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from pantau.settings import Settings
from pantau.tls import TlsConfigError, client_tls_context
from tests.ingest_helpers import count, pantau, running_collector, wait_for

pytestmark = pytest.mark.integration

MAKE_CERTS = Path(__file__).parents[1] / "deploy" / "tls" / "make-dev-certs.sh"
NOT_AUTHORIZED = 0x87
# Mosquitto 2.0 answers a wrong password with 0x87 too; other versions may say 0x86, "Bad user
# name or password". Either is a refusal.
REFUSED = (NOT_AUTHORIZED, 0x86)


@dataclass(frozen=True)
class Secured:
    """A broker with passwords, ACL and a TLS listener, and what was provisioned for it."""

    broker: MosquittoService
    city: str
    registry: Path
    logins: dict[str, str]  # username -> password
    tls_dir: Path
    wrong_ca: Path

    @property
    def tls_url(self) -> str:
        assert self.broker.tls_url is not None
        return self.broker.tls_url

    def devices_cli(self, *args: str) -> str:
        """Run `pantau devices` against this deployment (reloading the broker)."""
        pid_file = self.broker.directory / "mosquitto.pid"
        result = CliRunner().invoke(
            pantau_main,
            [
                "devices",
                "--registry",
                str(self.registry),
                "--reload-pid-file",
                str(pid_file),
                *args,
            ],
        )
        assert result.exit_code == 0, result.output
        return result.output


def _device(device_id: str, city: str) -> Device:
    return Device(device_id, "air_quality", city, "bobotsari", -7.3, 109.3, 60.0)


def _logins_csv(stdout: str) -> dict[str, str]:
    """The logins `pantau devices` printed (one device_id,username,password line each)."""
    lines = [line.split(",") for line in stdout.strip().splitlines()]
    return {username: password for _device_id, username, password in lines}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Devices and services provisioned with `pantau devices`; a broker enforcing the result."""
    root = tmp_path_factory.mktemp("secured")
    tls_dir, other = root / "tls", root / "other-ca"
    for folder, extra in ((tls_dir, ["-c", "collector"]), (other, [])):
        done = subprocess.run(
            ["sh", str(MAKE_CERTS), "-d", str(folder), *extra],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    city = f"c{uuid.uuid4().hex[:10]}"
    fleet = root / "fleet.csv"
    Registry(_device(name, city) for name in ("dev-a", "dev-b", "dev-c")).write_csv(fleet)
    registry = root / "deploy" / "registry.csv"
    registry.parent.mkdir()
    runner = CliRunner()
    base = ["devices", "--registry", str(registry)]
    result = runner.invoke(pantau_main, [*base, "import", str(fleet)])
    assert result.exit_code == 0, result.output
    logins = _logins_csv(result.stdout)
    for service in ("pantau-ingest-1", "pantau-api-1"):
        result = runner.invoke(pantau_main, [*base, "passwd", service])
        assert result.exit_code == 0, result.output
        logins.update(_logins_csv(result.stdout))
    broker = MosquittoService(
        root,
        free_port(),
        password_file=registry.parent / PASSWORD_NAME,
        acl_file=registry.parent / ACL_NAME,
        tls=TlsListener(
            free_port(), tls_dir / "ca.crt", tls_dir / "server.crt", tls_dir / "server.key"
        ),
    )
    try:
        broker.start()
        yield Secured(broker, city, registry, logins, tls_dir, other / "ca.crt")
    finally:
        broker.stop()


def _client(username: str | None, password: str | None) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"t-{uuid.uuid4().hex[:10]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if username is not None:
        client.username_pw_set(username, password)
    return client


def connack(
    port: int,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> int:
    """The CONNACK reason code the broker answers a CONNECT with (0: accepted)."""
    client = _client(username, password)
    if tls is not None:
        client.tls_set_context(tls)
    codes: list[int] = []

    def on_connect(
        c: mqtt.Client, u: Any, f: mqtt.ConnectFlags, reason: ReasonCode, p: Properties | None
    ) -> None:
        codes.append(reason.value)

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port)
        deadline = time.monotonic() + 5
        # select + loop_read: loop() would leave a socketpair for paho's __del__ to close.
        while not codes and time.monotonic() < deadline:
            sock = client.socket()
            if sock is None:
                break
            if select.select([sock], [], [], 0.05)[0]:
                client.loop_read()
        if not codes:
            raise ConnectionError("the broker closed the connection without a CONNACK")
        if codes[0] == 0:
            client.disconnect()
        return codes[0]
    finally:
        leftover = client.socket()
        if leftover is not None:
            leftover.close()


@contextlib.contextmanager
def session(
    port: int, username: str, password: str
) -> Iterator[tuple[mqtt.Client, dict[str, Any]]]:
    """A connected client with a network thread; records PUBACK reasons, messages, disconnects."""
    client = _client(username, password)
    seen: dict[str, Any] = {"pubacks": {}, "messages": [], "disconnected": threading.Event()}
    connected = threading.Event()

    def on_connect(
        c: mqtt.Client, u: Any, f: mqtt.ConnectFlags, reason: ReasonCode, p: Properties | None
    ) -> None:
        if not reason.is_failure:
            connected.set()

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: ReasonCode, p: Properties) -> None:
        seen["pubacks"][mid] = reason.value

    def on_disconnect(
        c: mqtt.Client,
        u: Any,
        f: mqtt.DisconnectFlags,
        reason: ReasonCode,
        p: Properties | None,
    ) -> None:
        seen["disconnected"].set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_message = lambda c, u, m: seen["messages"].append(m.topic)
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(60, 60)  # a kicked client stays out: the test looks at that
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(5), f"{username} could not connect"
        yield client, seen
    finally:
        client.disconnect()
        client.loop_stop()


def puback(client: mqtt.Client, seen: dict[str, Any], topic: str) -> int:
    """Publish at QoS 1 and return the PUBACK reason code."""
    info = client.publish(topic, b'{"ts": 1732700000, "pm25": 10}', qos=1)
    assert wait_for(lambda: info.mid in seen["pubacks"], timeout=5, interval=0.01)
    code: int = seen["pubacks"][info.mid]
    return code


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = client_tls_context(
        Settings(
            mqtt_url="mqtts://127.0.0.1:8883",
            mqtt_ca_file=ca,
            mqtt_cert_file=cert,
            mqtt_key_file=key,
        )
    )
    assert context is not None
    return context


# -- authentication --------------------------------------------------------------------------------


def test_anonymous_clients_are_refused(secured: Secured) -> None:
    assert connack(secured.broker.port) == NOT_AUTHORIZED
    tls = tls_context(secured.tls_dir / "ca.crt")
    assert connack(int(secured.tls_url.rsplit(":", 1)[1]), tls=tls) == NOT_AUTHORIZED


def test_wrong_passwords_are_refused_and_right_ones_accepted(secured: Secured) -> None:
    port = secured.broker.port
    assert connack(port, "dev-a", "not-the-password") in REFUSED
    assert connack(port, "dev-a", secured.logins["dev-b"]) in REFUSED
    assert connack(port, "dev-a", secured.logins["dev-a"]) == 0
    assert connack(port, "pantau-ingest-1", secured.logins["pantau-ingest-1"]) == 0


def test_generated_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    # Same format both ways: mosquitto_passwd's hash verifies with ours, ours with the broker
    # (every login in this module goes through a hash written by hash_password).
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "u", "s3cret"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$") and verify_password("s3cret", theirs)
    assert not verify_password("other", theirs)
    assert verify_password("s3cret", hash_password("s3cret"))


# -- authorisation ---------------------------------------------------------------------------------


def test_device_cannot_publish_as_another_device(secured: Secured) -> None:
    port, city = secured.broker.port, secured.city
    own = f"city/{city}/bobotsari/air_quality/dev-a"
    other = f"city/{city}/bobotsari/air_quality/dev-b"
    collector = ("pantau-ingest-1", secured.logins["pantau-ingest-1"])
    with (
        session(port, *collector) as (watcher, watched),
        session(port, "dev-a", secured.logins["dev-a"]) as (device, acks),
    ):
        # Both the plain filter and a collector's shared subscription.
        watcher.subscribe([(f"city/{city}/#", 1), (f"$share/pantau/city/{city}/#", 1)])
        time.sleep(0.3)
        assert puback(device, acks, other) == NOT_AUTHORIZED
        # Same device id elsewhere in the tree, and the derived topics, are not its own either.
        assert puback(device, acks, f"city/{city}/kutasari/air_quality/dev-a") == NOT_AUTHORIZED
        assert puback(device, acks, f"pantau/derived/{city}/x/air_quality/dev-a/anomaly") == 0x87
        assert puback(device, acks, own) == 0
        assert wait_for(lambda: watched["messages"].count(own) == 2, timeout=5, interval=0.02)
        time.sleep(0.3)
        assert set(watched["messages"]) == {own}


@pytest.mark.parametrize(
    ("user", "topic", "allowed"),
    [
        ("pantau-ingest-1", "pantau/derived/{city}/d/air_quality/dev-a/indicator", True),
        ("pantau-ingest-1", "city/{city}/bobotsari/air_quality/dev-a", True),  # clears retained
        ("pantau-ingest-1", "pantau/ops/ack/x", False),
        ("pantau-api-1", "pantau/ops/ack/{city}", True),
        ("pantau-api-1", "pantau/derived/{city}/d/air_quality/dev-a/indicator", False),
        ("pantau-api-1", "city/{city}/bobotsari/air_quality/dev-a", False),
    ],
)
def test_service_accounts_publish_only_where_their_role_says(
    secured: Secured, user: str, topic: str, allowed: bool
) -> None:
    with session(secured.broker.port, user, secured.logins[user]) as (client, seen):
        code = puback(client, seen, topic.format(city=secured.city))
    # 0x10 "No matching subscribers" is a success code too.
    assert code in ((0, 0x10) if allowed else (NOT_AUTHORIZED,))


def test_revoked_device_is_refused_after_reload(secured: Secured) -> None:
    port, password = secured.broker.port, secured.logins["dev-c"]
    with session(port, "dev-c", password) as (_client, seen):
        output = secured.devices_cli("revoke", "dev-c")
        assert "reloaded" in output
        # The broker re-reads both files on SIGHUP and drops clients no longer allowed.
        assert seen["disconnected"].wait(5), "a revoked device stayed connected"
    assert wait_for(lambda: connack(port, "dev-c", password) != 0, timeout=5, interval=0.05)
    assert connack(port, "dev-c", password) in REFUSED
    acl = (secured.registry.parent / ACL_NAME).read_text()
    assert (
        "dev-c" not in acl and "dev-c" not in (secured.registry.parent / PASSWORD_NAME).read_text()
    )
    assert "dev-c" not in CredentialStore.load(secured.registry.with_name("registry.csv.passwd"))
    # Everyone else is unaffected.
    assert connack(port, "dev-a", secured.logins["dev-a"]) == 0


def test_devices_cli_refuses_bad_requests(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["devices", "--registry", str(tmp_path / "r.csv")]
    add = ["add", "--kind", "air_quality", "--city", "x", "--district", "y"]
    add += ["--lat", "0", "--lon", "0", "--interval", "60"]
    assert runner.invoke(pantau_main, [*base, *add, "ok-1"]).exit_code == 0
    cases = {
        "already registered": [*base, *add, "ok-1"],
        "not a topic segment": [*base, *add, "Not/Valid"],
        "service account name": [*base, *add, "pantau-api-1"],
        "unknown device(s): ghost": [*base, "revoke", "ghost"],
        "unknown device 'ghost'": [*base, "passwd", "ghost"],
    }
    for message, args in cases.items():
        result = runner.invoke(pantau_main, args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    registry = Registry.from_csv(tmp_path / "r.csv")
    assert [d.device_id for d in registry] == ["ok-1"]
    assert "user ok-1\ntopic write city/x/y/air_quality/ok-1" in render_acl(
        registry, CredentialStore.load(tmp_path / "r.csv.passwd")
    )


# -- TLS -------------------------------------------------------------------------------------------


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    with pytest.raises(TlsConfigError, match="not mqtts://"):
        client_tls_context(Settings(mqtt_url="mqtt://h:1", mqtt_ca_file=ca))
    with pytest.raises(TlsConfigError, match="needs both"):
        client_tls_context(Settings(mqtt_url="mqtts://h:1", mqtt_cert_file=ca))
    with pytest.raises(TlsConfigError, match="does not exist"):
        client_tls_context(Settings(mqtt_url="mqtts://h:1", mqtt_ca_file=tmp_path / "nope"))
    assert client_tls_context(Settings(mqtt_url="mqtt://h:1")) is None


def test_collector_stores_simulated_fleet_over_tls(
    secured: Secured, influx: InfluxDBService, influx_db: str, tmp_path: Path
) -> None:
    user, password = "pantau-ingest-1", secured.logins["pantau-ingest-1"]
    url = secured.tls_url.replace("mqtts://", f"mqtts://{user}:{password}@")
    tls_env = {"PANTAU_MQTT_CA_FILE": str(secured.tls_dir / "ca.crt")}
    # The collector also presents a client certificate (the listener accepts, not requires, one).
    collector_env = {
        **tls_env,
        "PANTAU_MQTT_CERT_FILE": str(secured.tls_dir / "collector.crt"),
        "PANTAU_MQTT_KEY_FILE": str(secured.tls_dir / "collector.key"),
    }
    fleet = tmp_path / "fleet.csv"
    Registry(_device(d, secured.city) for d in ("dev-a", "dev-b")).write_csv(fleet)
    logins = tmp_path / "logins.csv"
    logins.write_text(
        "device_id,username,password\n"
        + "".join(f"{d},{d},{secured.logins[d]}\n" for d in ("dev-a", "dev-b"))
    )
    with running_collector(
        url,
        influx.url,
        influx_db,
        topic=f"city/{secured.city}/+/+/+",
        registry=fleet,
        client_id=user,
        env=collector_env,
        extra_args=["--share-group", "pantau", "--no-processors"],  # store-only replicas
    ):
        done = pantau(
            "simulate",
            "--mqtt",
            secured.tls_url,
            "--registry",
            str(fleet),
            "--credentials",
            str(logins),
            "--duration",
            "600",
            "--interval",
            "60",
            "--fast",
            env=tls_env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        sent = int(done.stdout.split("messages: sent=")[1].split()[0])
        assert sent >= 18 and f"acked={sent} unacked=0" in done.stdout
        with InfluxClient(influx.url, influx_db) as client:
            stored = wait_for(
                lambda: count(client, "air_quality", "pm25") >= sent, timeout=15, interval=0.1
            )
            assert stored, count(client, "air_quality", "pm25")
            assert count(client, "rejected", "detail") == 0
    assert f"u'{user}'" in secured.broker.log_path.read_text()


def test_wrong_ca_fails_clearly(secured: Secured, influx: InfluxDBService, tmp_path: Path) -> None:
    wrong = {"PANTAU_MQTT_CA_FILE": str(secured.wrong_ca)}
    # The simulator gives up at once: every connection would fail alike.
    done = pantau(
        "simulate",
        "--mqtt",
        secured.tls_url,
        "--devices",
        "1",
        "--duration",
        "60",
        "--fast",
        env=wrong,
        timeout=60,
    )
    assert done.returncode == 1
    assert "TLS certificate verification failed" in done.stderr, done.stderr[-2000:]
    # The collector keeps retrying with backoff (a fixed certificate recovers) and logs an ERROR
    # naming certificate verification on every attempt.
    log_path = tmp_path / "collector.log"
    user, password = "pantau-ingest-1", secured.logins["pantau-ingest-1"]
    url = secured.tls_url.replace("mqtts://", f"mqtts://{user}:{password}@")
    with running_collector(
        url,
        influx.url,
        "unused",
        topic="city/+/+/+/+",
        client_id=user,
        env=wrong,
        log_path=log_path,
        wait_connected=False,
    ) as process:

        def errors() -> int:
            text = log_path.read_text()
            return sum(
                "level=error" in line and "TLS certificate verification failed" in line
                for line in text.splitlines()
            )

        assert wait_for(lambda: errors() >= 2, timeout=15, interval=0.1), log_path.read_text()
        assert process.poll() is None  # still retrying, not crashed
        assert "connected to broker" not in log_path.read_text()


def test_api_follows_broker_over_tls_and_logs_a_wrong_ca(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    user, password = "pantau-api-1", secured.logins["pantau-api-1"]
    url = secured.tls_url.replace("mqtts://", f"mqtts://{user}:{password}@")

    async def follow(ca: Path) -> bool:
        settings = Settings(mqtt_url=url, mqtt_ca_file=ca, api_city=secured.city)
        link = BrokerLink(settings, LiveState(open_anomaly_s=60, anomaly_status_s=60), print)
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(link.connected.wait(), timeout=3)
            await link.publish(f"pantau/ops/ack/{secured.city}", {"ok": True})
            return True
        except TimeoutError:
            return False
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert asyncio.run(follow(secured.tls_dir / "ca.crt"))
    with caplog.at_level(logging.ERROR, logger="api.broker"):
        assert not asyncio.run(follow(secured.wrong_ca))
    assert any("TLS certificate verification failed" in r.getMessage() for r in caplog.records)


def test_broker_can_require_client_certificates(secured: Secured, tmp_path: Path) -> None:
    tls = secured.tls_dir
    strict = MosquittoService(
        tmp_path,
        free_port(),
        password_file=secured.registry.parent / PASSWORD_NAME,
        acl_file=secured.registry.parent / ACL_NAME,
        tls=TlsListener(free_port(), tls / "ca.crt", tls / "server.crt", tls / "server.key", True),
    )
    strict.start()
    try:
        assert strict.tls_url is not None
        port = int(strict.tls_url.rsplit(":", 1)[1])
        login = ("pantau-ingest-1", secured.logins["pantau-ingest-1"])
        # TLS 1.3: the client finishes its handshake first; the broker then hangs up on it.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            connack(port, *login, tls=tls_context(tls / "ca.crt"))
        with_cert = tls_context(tls / "ca.crt", tls / "collector.crt", tls / "collector.key")
        assert connack(port, *login, tls=with_cert) == 0
    finally:
        strict.stop()


def test_tls_context_verifies_the_host_name(secured: Secured) -> None:
    # The server certificate names localhost, 127.0.0.1 and ::1; any other name must fail even
    # though the CA is right (paho and aiomqtt pass the URL's host as the expected name).
    context = tls_context(secured.tls_dir / "ca.crt")
    port = int(secured.tls_url.rsplit(":", 1)[1])
    for name, ok in (("localhost", True), ("127.0.0.1", True), ("broker.invalid", False)):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            if ok:
                with context.wrap_socket(raw, server_hostname=name):
                    pass
            else:
                with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                    context.wrap_socket(raw, server_hostname=name)
