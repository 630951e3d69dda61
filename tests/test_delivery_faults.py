"""Delivery under faults: what InfluxDB holds equals what was published, point for point.

Each test runs its own Mosquitto and InfluxDB (they get restarted) and real `pantau ingest`
processes. The first tests replay a stream of 50,000 air-quality readings; the others a
multi-kind stream (tests/fault_helpers.py: air_quality pm25/pm10, water_level level_cm,
streetlight lamp_on/dim_pct/power_w) and compare every (measurement, device, time, field).
Waits are on facts (the collector's metrics, the broker's PUBACKs and $SYS counters, rows in
InfluxDB); a sleep only holds a fault condition for a while.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pantau.dev import InfluxDBService, MosquittoService, free_port
from pantau.influx import InfluxClient
from tests.fault_helpers import (
    KINDS,
    BrokerStats,
    InfluxProxy,
    Key,
    MultiStream,
    answer,
    conflicting_values,
    differences,
    metric,
    parse_lines,
    reading_conflicts,
    stored,
    wait_metric,
    wait_subscribed,
)
from tests.ingest_helpers import (
    Stream,
    rows,
    running_collector,
    scrape,
    stored_points,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(240)]

DB = "faults"
STORE_ONLY = {"PANTAU_PROCESSORS": "false"}  # required for a share group on Mosquitto
STORED, RETAINED, DROPPED = BrokerStats.TOPICS
WRITTEN = "pantau_readings_written_total"  # summed over its `kind` label

log = logging.getLogger(__name__)


@dataclass
class Rig:
    """Private services and the folders of one fault test."""

    broker: MosquittoService
    influx: InfluxDBService
    root: Path

    def collector(
        self,
        name: str,
        *,
        port: int,
        influx_url: str | None = None,
        db: str = DB,
        env: dict[str, str] | None = None,
        share_group: str | None = None,
        spool_max: int | None = None,
        batch_size: int = 2000,
    ) -> AbstractContextManager[subprocess.Popen[bytes]]:
        """`pantau ingest` with a stable client id and spool per name, metrics on `port`."""
        args = ["--batch-size", str(batch_size), "--batch-interval", "0.1"]
        args += ["--metrics-port", str(port)]
        if share_group is not None:
            args += ["--share-group", share_group]
        if spool_max is not None:
            args += ["--spool-max-bytes", str(spool_max)]
        return running_collector(
            self.broker.url,
            influx_url or self.influx.url,
            db,
            topic="city/+/+/+/+",
            client_id=f"collector-{name}",
            spool_dir=self.root / f"spool-{name}",
            log_path=self.root / f"{name}-{time.monotonic_ns()}.log",
            env=env,
            extra_args=args,
        )

    def logs(self) -> str:
        """The tail of every collector log of this test."""
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log"))
        )

    def influx_query(self, statement: str) -> None:
        """Run one InfluxQL statement (POST /query) and fail on any error."""
        response = httpx.post(f"{self.influx.url}/query", data={"q": statement}, timeout=30)
        response.raise_for_status()
        errors = [r["error"] for r in response.json().get("results", []) if "error" in r]
        assert not errors, (statement, errors)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A private Mosquitto and InfluxDB for one test."""
    broker = MosquittoService(tmp_path / "services", free_port())
    influx = InfluxDBService(tmp_path / "services", free_port())
    broker.start()
    influx.start()
    try:
        yield Rig(broker, influx, tmp_path)
    finally:
        broker.stop()
        influx.stop()


def sigkill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a collector and reap it."""
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def assert_all_stored(rig: Rig, stream: Stream, timeout: float = 90) -> None:
    """InfluxDB ends up holding exactly the published points: none missing, none extra."""
    with InfluxClient(rig.influx.url, DB) as client:

        def complete() -> bool:
            try:
                return len(stored_points(client)) >= len(stream.expected)
            except Exception:
                return False

        assert wait_for(complete, timeout, interval=1.0), rig.logs()
        got = stored_points(client)
    missing = stream.expected.keys() - got.keys()
    extra = got.keys() - stream.expected.keys()
    assert not missing and not extra, (len(missing), len(extra), rig.logs())
    assert got == stream.expected


def assert_exact(
    rig: Rig,
    expected: dict[Key, float],
    *,
    db: str = DB,
    timeout: float = 60,
    skip_devices: tuple[str, ...] = (),
) -> None:
    """Wait until InfluxDB holds every expected point, then compare the maps exactly."""
    with InfluxClient(rig.influx.url, db) as client:

        def complete() -> bool:
            try:
                return len(stored(client, skip_devices=skip_devices)) >= len(expected)
            except Exception:
                return False

        wait_for(complete, timeout, interval=0.5)
        got = stored(client, skip_devices=skip_devices)
    assert got == expected, differences(got, expected) + "\n" + rig.logs()


# -- the 50,000-reading air-quality stream -----------------------------------------------------


def test_collector_sigkilled_five_times(rig: Rig) -> None:
    """Five SIGKILLs at fixed points of the stream: every reading stored with its value."""
    stream = Stream(rig.broker.url, "killcity", rate=1000)
    port = free_port()
    with ExitStack() as stack:
        process = stack.enter_context(rig.collector("a", port=port))
        wait_subscribed(rig.broker.url, "killcity", [port])
        stream.start()
        for k in range(1, 6):
            stream.wait_progress(k / 6)
            sigkill(process)
            process = stack.enter_context(rig.collector("a", port=free_port()))
        stream.join()
        assert_all_stored(rig, stream)


def test_broker_restarted_mid_stream(rig: Rig) -> None:
    """Mosquitto stopped and started again mid-stream: nothing lost, nothing changed."""
    stream = Stream(rig.broker.url, "brokercity", rate=1000)
    port = free_port()
    with rig.collector("a", port=port):
        wait_subscribed(rig.broker.url, "brokercity", [port])
        stream.start()
        stream.wait_progress(0.4)
        rig.broker.stop()
        time.sleep(1.0)  # hold the outage
        rig.broker.start()
        stream.join()
        assert_all_stored(rig, stream)
        assert metric(port, "pantau_mqtt_reconnects_total") >= 1


def test_influxdb_down_then_spool_drains(rig: Rig) -> None:
    """InfluxDB stopped for a fifth of the stream: it is spooled, then replayed in full."""
    stream = Stream(rig.broker.url, "influxcity", rate=1000)
    port = free_port()
    with rig.collector("a", port=port):
        wait_subscribed(rig.broker.url, "influxcity", [port])
        stream.start()
        stream.wait_progress(0.3)
        rig.influx.stop()
        spooled = wait_metric(port, "pantau_readings_spooled_total", 0.2 * len(stream.expected))
        rig.influx.start()
        stream.join()
        assert_all_stored(rig, stream)
        assert spooled > 0, rig.logs()
        assert wait_for(lambda: scrape(port).get("pantau_spool_readings") == 0, 30)
        metrics = scrape(port)
        assert metrics["pantau_readings_replayed_total"] == metrics["pantau_readings_spooled_total"]


class _FlakyInflux(BaseHTTPRequestHandler):
    """Forward to InfluxDB, or answer 503, or answer too slowly, as the test's mode says."""

    upstream = ""
    mode = "pass"

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "503" and self.path.startswith("/write"):
            answer(self, 503, b'{"error":"overloaded"}')
            return
        if self.mode == "slow" and self.path.startswith("/write"):
            time.sleep(2.5)  # beyond the collector's 1 s timeout; the write still happens
        response = httpx.request(method, self.upstream + self.path, content=body, timeout=30)
        answer(self, response.status_code, response.content)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_influxdb_slow_or_failing_with_5xx(rig: Rig) -> None:
    """InfluxDB answering 503, then too slowly, then well again: everything stored."""
    handler: Any = type("Flaky", (_FlakyInflux,), {"upstream": rig.influx.url, "mode": "pass"})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    stream = Stream(rig.broker.url, "flakycity", rate=1000)
    port = free_port()
    try:
        with rig.collector(
            "a", port=port, influx_url=proxy_url, env={"PANTAU_INFLUX_TIMEOUT_S": "1"}
        ):
            wait_subscribed(rig.broker.url, "flakycity", [port])
            stream.start()
            stream.wait_progress(0.2)
            handler.mode = "503"
            time.sleep(4)  # hold each fault for a while
            handler.mode = "slow"
            time.sleep(4)
            handler.mode = "pass"
            stream.join()
            assert_all_stored(rig, stream)
            metrics = scrape(port)
            assert metrics['pantau_influx_errors_total{type="unavailable"}'] > 0
            assert metrics["pantau_readings_spooled_total"] > 0
    finally:
        proxy.shutdown()
        proxy.server_close()


# -- the multi-kind stream -----------------------------------------------------------------------


def test_spooled_readings_survive_a_sigkill_and_are_replayed(rig: Rig) -> None:
    """InfluxDB down, readings acked into the spool, SIGKILL, restart, InfluxDB back: exact.

    A recording proxy in front of InfluxDB (503 while it is down) shows that no reading ever
    reached InfluxDB with two values, however often the spool replayed it.
    """
    proxy = InfluxProxy(rig.influx.url).start()
    stream = MultiStream(rig.broker.url, "spoolcity", devices=10, per_device=400, rate=250)
    port = free_port()
    try:
        with ExitStack() as stack:
            process = stack.enter_context(rig.collector("a", port=port, influx_url=proxy.url))
            wait_subscribed(rig.broker.url, stream.city, [port])
            rig.influx.stop()
            stream.start()
            spooled = wait_metric(port, "pantau_readings_spooled_total", 0.5 * stream.readings)
            # The messages holding those readings (5 a message) are acknowledged, and the
            # broker had each of them from the publisher (its PUBACK).
            acked = wait_metric(port, "pantau_messages_acked_total", spooled / 5)
            assert wait_for(lambda: stream.acked >= spooled / 5, 10), (stream.acked, acked)
            assert metric(port, "pantau_readings_replayed_total") == 0
            assert not proxy.bodies()  # nothing reached InfluxDB
            sigkill(process)
            port = free_port()
            stack.enter_context(rig.collector("a", port=port, influx_url=proxy.url))
            # The restarted collector found every acknowledged reading in its spool.
            assert metric(port, "pantau_spool_readings") >= spooled, rig.logs()
            rig.influx.start()
            stream.join()
            assert_exact(rig, stream.expected)
            assert wait_for(lambda: metric(port, "pantau_spool_readings") == 0, 30), rig.logs()
            assert metric(port, "pantau_readings_replayed_total") >= spooled
            assert metric(port, "pantau_spool_full") == 0
        assert not reading_conflicts(proxy.bodies())
        times = collections.Counter(
            (series, name, ts)
            for body in proxy.bodies()
            for series, name, ts, _ in parse_lines(body)
            if series.split(",")[0] in KINDS
        )
        log.info(
            "spool replay: %d reading fields reached InfluxDB, %d of them more than once",
            len(times),
            sum(1 for n in times.values() if n > 1),
        )
    finally:
        proxy.close()


def test_readings_written_counts_only_readings_in_influxdb(rig: Rig) -> None:
    """With InfluxDB down nothing is written to it: pantau_readings_written_total stays 0."""
    stream = MultiStream(rig.broker.url, "countcity", devices=4, per_device=100, rate=300)
    port = free_port()
    with rig.collector("a", port=port):
        wait_subscribed(rig.broker.url, stream.city, [port])
        rig.influx.stop()
        stream.start()
        stream.join()
        wait_metric(port, "pantau_readings_spooled_total", stream.readings)
        assert metric(port, "pantau_readings_replayed_total") == 0
        assert metric(port, WRITTEN) == 0, f"{metric(port, WRITTEN)} readings counted as written"


def test_full_spool_holds_acks_and_survives_a_sigkill(rig: Rig) -> None:
    """A full spool stops acknowledgements, the broker keeps the backlog, a SIGKILL loses none."""
    spool_max = 200_000
    stream = MultiStream(rig.broker.url, "fullcity", devices=10, per_device=400, rate=400)
    port = free_port()
    stats = BrokerStats(rig.broker.url)
    try:
        with ExitStack() as stack:
            process = stack.enter_context(
                rig.collector("a", port=port, spool_max=spool_max, batch_size=500)
            )
            wait_subscribed(rig.broker.url, stream.city, [port])
            rig.influx.stop()
            stream.start()
            wait_metric(port, "pantau_spool_full", 1)
            stream.join()  # the broker took every message although the collector cannot store them
            acked = metric(port, "pantau_messages_acked_total")
            time.sleep(3)  # hold the full spool: acknowledgements must not move
            assert metric(port, "pantau_messages_acked_total") == acked
            assert metric(port, "pantau_spool_full") == 1
            assert metric(port, "pantau_unacked_messages") > 0
            assert 0 < metric(port, "pantau_spool_bytes") <= spool_max
            # Mosquitto still holds every message the collector has not acknowledged.
            backlog = len(stream.messages) - acked
            sys = stats.until(
                lambda v: len(v) == 3 and v[STORED] - v[RETAINED] >= backlog, timeout=60
            )
            held = sys[STORED] - sys[RETAINED]
            log.info("full spool: broker holds %d messages, %d unacknowledged", held, backlog)
            assert held >= backlog > 0, (sys, backlog)
            assert sys[DROPPED] == 0, sys
            sigkill(process)
            port = free_port()
            stack.enter_context(rig.collector("a", port=port, spool_max=spool_max, batch_size=500))
            assert metric(port, "pantau_spool_bytes") > 0  # the spool is still there
            rig.influx.start()
            assert_exact(rig, stream.expected)
            assert wait_for(lambda: metric(port, "pantau_spool_full") == 0, 30)
            assert "spool full" in rig.logs()
            assert stats.latest()[DROPPED] == 0
    finally:
        stats.close()


def test_share_group_replicas_split_the_stream_exactly(rig: Rig) -> None:
    """Two store-only replicas in one share group: each writes a share, the sum is exact."""
    first = MultiStream(rig.broker.url, "sharecity", devices=6, per_device=300, rate=300)
    second = MultiStream(rig.broker.url, "sharecity", devices=6, per_device=300, rate=300, name="b")
    ports = {"a": free_port(), "b": free_port()}
    with ExitStack() as stack:
        stack.enter_context(rig.collector("a", port=ports["a"], share_group="g", env=STORE_ONLY))
        b = stack.enter_context(
            rig.collector("b", port=ports["b"], share_group="g", env=STORE_ONLY)
        )
        wait_subscribed(rig.broker.url, first.city, list(ports.values()))
        first.start()
        first.join()
        assert_exact(rig, first.expected)
        # InfluxDB was up throughout: every reading went straight to InfluxDB, none to a spool.
        assert all(metric(port, "pantau_readings_spooled_total") == 0 for port in ports.values())

        def shares() -> dict[str, float]:
            return {name: metric(port, WRITTEN) for name, port in ports.items()}

        # Duplicates would overwrite themselves in InfluxDB; the counts show none was missed.
        assert wait_for(lambda: sum(shares().values()) >= first.readings, 10), shares()
        log.info("share group: %s of %d readings", shares(), first.readings)
        assert all(share > 0 for share in shares().values()), shares()
        # One replica SIGKILLed mid-stream and restarted under its own client id.
        second.start()
        second.wait_progress(0.4)
        sigkill(b)
        ports["b"] = free_port()
        stack.enter_context(rig.collector("b", port=ports["b"], share_group="g", env=STORE_ONLY))
        second.join()
        assert_exact(rig, first.expected | second.expected)
        assert metric(ports["b"], WRITTEN) > 0, rig.logs()  # the restarted replica took its share


def test_influxdb_slower_than_the_timeout(rig: Rig, record_property: Any) -> None:
    """Writes that land but answer too late: spooled, replayed, every point one value."""
    proxy = InfluxProxy(rig.influx.url, delay_s=2.0).start()
    stream = MultiStream(rig.broker.url, "slowcity", devices=10, per_device=400, rate=250)
    port = free_port()
    try:
        with rig.collector(
            "a", port=port, influx_url=proxy.url, env={"PANTAU_INFLUX_TIMEOUT_S": "1"}
        ):
            wait_subscribed(rig.broker.url, stream.city, [port])
            stream.start()
            stream.wait_progress(0.2)
            proxy.mode = "slow"
            wait_metric(port, 'pantau_influx_errors_total{type="unavailable"}', 1)
            wait_metric(port, "pantau_readings_spooled_total", 1)
            time.sleep(3)  # hold the slow InfluxDB while batches keep coming
            proxy.mode = "pass"
            stream.join()
            assert_exact(rig, stream.expected)
            assert wait_for(lambda: metric(port, "pantau_spool_readings") == 0, 30), rig.logs()
            metrics = scrape(port)
        # A timeout is classified as "unavailable" (retry later), never as "client" (refused).
        assert metrics['pantau_influx_errors_total{type="unavailable"}'] > 0, metrics
        assert metrics.get('pantau_influx_errors_total{type="client"}', 0) == 0, metrics
        assert "ReadTimeout" in rig.logs()
        assert metrics["pantau_readings_spooled_total"] > 0
        assert metrics["pantau_readings_replayed_total"] == metrics["pantau_readings_spooled_total"]
        late = [w for w in proxy.writes if w.mode == "slow" and 200 <= w.status < 300]
        assert late, "no write landed while InfluxDB was slow"
        conflicts = conflicting_values(proxy.bodies())
        readings = reading_conflicts(proxy.bodies())
        assert not readings, list(readings.items())[:5]
        landings = {
            body: sum(1 for w in proxy.writes if w.body == body) for body in {w.body for w in late}
        }
        record_property("late_writes", len(late))
        record_property("landings_per_late_body", sorted(landings.values()))
        record_property("late_bodies", len({w.body for w in late}))
        record_property("derived_conflicts", len(conflicts) - len(readings))
        log.warning(
            "slow InfluxDB: %d writes landed after the collector had timed out (%d distinct "
            "bodies, which reached InfluxDB %s times in all); derived points with two values: %d",
            len(late),
            len(landings),
            sorted(landings.values()),
            len(conflicts) - len(readings),
        )
    finally:
        proxy.close()


@dataclass
class Refusals:
    """What a type-conflict run produced: points InfluxDB refused and points kept as refused."""

    refused: dict[Key, float]  # the stream's points in the conflicting shard
    recorded: dict[Key, float]  # the points the `rejected` measurement holds (from `payload`)
    rows: list[dict[str, Any]]  # the influx_rejected rows
    metric: float  # pantau_rejected_total{reason="influx_rejected"}


def run_type_conflict(rig: Rig) -> Refusals:
    """Stream into a database whose level_cm is a string in one 1-hour shard; all but it exact."""
    # One-hour shards; in one hour level_cm already is a string, so float writes there fail
    # ("partial write: field type conflict": InfluxDB stores the batch's other points). The
    # hour starts in the middle of a message (5 readings, 5 minutes) of every gauge.
    hour = (int(time.time()) - 4 * 3600) // 3600 * 3600
    stream = MultiStream(
        rig.broker.url,
        "conflictcity",
        devices=10,
        per_device=300,
        rate=300,
        start_s=hour - 24 * 300 - 150,
    )
    rig.influx_query(f'CREATE DATABASE "{DB}" WITH SHARD DURATION 1h')
    with InfluxClient(rig.influx.url, DB) as client:
        client.write(
            f"water_level,city=conflictcity,district=bobotsari,device_id=wl-conflict "
            f'level_cm="text" {(hour + 1) * 1_000_000_000}'.encode()
        )
    lo, hi = hour * 1_000_000_000, (hour + 3600) * 1_000_000_000
    refused = {
        k: v for k, v in stream.expected.items() if k[0] == "water_level" and lo <= k[2] < hi
    }
    assert 0 < len(refused) < sum(1 for k in stream.expected if k[0] == "water_level")
    port = free_port()
    with rig.collector("a", port=port):
        wait_subscribed(rig.broker.url, stream.city, [port])
        stream.start()
        stream.join()
        # Every point outside the conflicting shard is stored with its value; none inside it.
        kept = {k: v for k, v in stream.expected.items() if k not in refused}
        assert_exact(rig, kept, skip_devices=("wl-conflict",))
        with InfluxClient(rig.influx.url, DB) as client:

            def influx_rejected() -> list[dict[str, Any]]:
                return [r for r in rows(client, "rejected") if r["reason"] == "influx_rejected"]

            wait_for(lambda: len(influx_rejected()) >= len(refused), 30, interval=0.5)
            rejected = influx_rejected()
        count = metric(port, 'pantau_rejected_total{reason="influx_rejected"}')
    recorded: dict[Key, float] = {}
    for row in rejected:
        for series, name, ts, raw in parse_lines(row["payload"].encode()):
            device = dict(t.split("=", 1) for t in series.split(",")[1:])["device_id"]
            assert row["device_id"] == device, row
            recorded[(series.split(",")[0], device, ts, name)] = float(raw)
    return Refusals(refused, recorded, rejected, count)


def test_points_influxdb_refuses_become_rejections(rig: Rig) -> None:
    """A field type conflict in one shard: those points go to `rejected`, the rest is exact."""
    result = run_type_conflict(rig)
    for row in result.rows:
        assert row["kind"] == "water_level", row
        assert "field type conflict" in row["detail"], row
        assert 'input field "level_cm" on measurement "water_level"' in row["detail"], row
    missing = result.refused.keys() - result.recorded.keys()
    assert not missing, (
        f"{len(missing)} refused points have no rejection, e.g. {sorted(missing)[:3]}"
    )
    assert all(result.recorded[k] == v for k, v in result.refused.items())
    assert result.metric == len(result.rows)


def test_points_influxdb_stored_are_not_recorded_as_refused(rig: Rig) -> None:
    """Only the points InfluxDB refused are kept as influx_rejected, and counted as such."""
    result = run_type_conflict(rig)
    wrongly = result.recorded.keys() - result.refused.keys()
    assert not wrongly, (
        f"{len(wrongly)} of {len(result.recorded)} points recorded as refused although "
        f"InfluxDB stored them, e.g. {sorted(wrongly)[:3]}"
    )
    assert result.metric == len(result.refused)


def anomaly_keys(client: InfluxClient, until_ns: int) -> list[tuple[str, str, str, int]]:
    """(device_id, field, detector, time) of every anomaly in the stream's own time range.

    Anomalies after `until_ns` are the silence sweep's, stamped with the wall clock.
    """
    return sorted(
        (r["device_id"], r["field"], r["detector"], r["time"])
        for r in rows(client, "anomaly")
        if r["time"] <= until_ns
    )


def test_crash_between_write_and_ack(rig: Rig) -> None:
    """SIGKILL after InfluxDB took a batch, before its ack: stored once, the same anomalies.

    A second collector takes the same stream uninterrupted into its own database; the anomaly
    rows of both must be equal.
    """
    proxy = InfluxProxy(rig.influx.url).start()
    per_device, crash_at = 400, 176  # the crash comes at about reading 176 of every device
    # Spikes after 60 readings of steady history, a few readings after the crash (while a
    # collector that lost its state would still be warming up), and later on.
    stream = MultiStream(
        rig.broker.url,
        "crashcity",
        devices=8,
        per_device=per_device,
        rate=200,
        spikes=(60, crash_at + 4, 300),
    )
    ref_port, port = free_port(), free_port()
    try:
        with ExitStack() as stack:
            stack.enter_context(rig.collector("ref", port=ref_port, db="reference"))
            process = stack.enter_context(rig.collector("a", port=port, influx_url=proxy.url))
            wait_subscribed(rig.broker.url, stream.city, [ref_port, port])
            proxy.kill_pid = process.pid
            stream.start()
            stream.wait_progress(crash_at / per_device)
            proxy.mode = "kill"
            assert proxy.killed.wait(30), rig.logs()
            process.wait(10)
            port = free_port()
            stack.enter_context(rig.collector("a", port=port, influx_url=proxy.url))
            stream.join()
            assert_exact(rig, stream.expected, db="reference")
            assert_exact(rig, stream.expected)
            assert wait_for(lambda: metric(port, "pantau_unacked_messages") == 0, 30)
            state_replayed = metric(port, "pantau_state_replayed_readings_total")
        killed = [w for w in proxy.writes if not w.answered]
        assert len(killed) == 1 and 200 <= killed[0].status < 300
        landed = {
            (series, name, ts)
            for series, name, ts, _ in parse_lines(killed[0].body)
            if series.split(",")[0] in KINDS
        }
        assert landed, "the unacknowledged write held no readings"
        # The batch that landed unacknowledged came again (redelivered) with the same values.
        conflicts = conflicting_values(proxy.bodies())
        readings = reading_conflicts(proxy.bodies())
        assert not readings, list(readings.items())[:5]
        # It was redelivered: each reading of the write that landed unacknowledged went again.
        times: collections.Counter[tuple[str, str, int]] = collections.Counter(
            (s, n, t) for body in proxy.bodies() for s, n, t, _ in parse_lines(body)
        )
        assert all(times[key] >= 2 for key in landed), sorted(k for k in landed if times[k] < 2)[:3]
        crash_j = sorted({(t // 1_000_000_000 - stream.start_s) // 60 for _, _, t in landed})
        with (
            InfluxClient(rig.influx.url, "reference") as ref_client,
            InfluxClient(rig.influx.url, DB) as client,
        ):
            until = stream.end_s * 1_000_000_000
            reference = anomaly_keys(ref_client, until)
            faulted = anomaly_keys(client, until)
        spikes = {(k[1], k[3], "spike", k[2]) for k in stream.spikes}
        assert spikes <= set(reference), sorted(spikes - set(reference))[:5]
        assert len(set(faulted)) == len(faulted)
        log.info(
            "crash hit readings %s..%s; %d reference anomalies (%s); the restarted collector "
            "replayed %d stored readings into its processors; derived points with two values: %d",
            crash_j[0],
            crash_j[-1],
            len(reference),
            dict(collections.Counter(k[2] for k in reference)),
            state_replayed,
            len(conflicts) - len(readings),
        )
        only_ref = sorted(set(reference) - set(faulted))
        only_faulted = sorted(set(faulted) - set(reference))
        assert faulted == reference, (
            f"{len(reference)} reference anomalies, {len(faulted)} after the crash; "
            f"only in the reference: {only_ref[:10]}; only after the crash: {only_faulted[:10]}; "
            f"the crash hit a write of {len(landed)} reading fields, readings "
            f"{crash_j[0]}..{crash_j[-1]} of the devices"
        )
    finally:
        proxy.close()
