"""Delivery under faults: what InfluxDB holds equals what was published, point for point.

Each test runs its own Mosquitto and InfluxDB (they get restarted), real `pantau ingest`
processes, and a known stream of 50,000 readings published at a fixed rate.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pantau.dev import InfluxDBService, MosquittoService, free_port
from pantau.influx import InfluxClient
from tests.ingest_helpers import (
    Stream,
    running_collector,
    scrape,
    stored_points,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(240)]

DB = "faults"


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
        influx_url: str | None = None,
        env: dict[str, str] | None = None,
        metrics_port: int | None = None,
        share: bool = False,
        spool_max: int | None = None,
    ):
        args = ["--batch-size", "2000", "--batch-interval", "0.1"]
        if metrics_port is not None:
            args += ["--metrics-port", str(metrics_port)]
        if share:
            args += ["--share-group", "pantau"]
        if spool_max is not None:
            args += ["--spool-max-bytes", str(spool_max)]
        return running_collector(
            self.broker.url,
            influx_url or self.influx.url,
            DB,
            topic="city/+/+/+/+",
            client_id=f"collector-{name}",
            spool_dir=self.root / f"spool-{name}",
            log_path=self.root / f"{name}-{time.monotonic_ns()}.log",
            env=env,
            extra_args=args,
        )

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log"))
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    broker = MosquittoService(tmp_path / "services", free_port())
    influx = InfluxDBService(tmp_path / "services", free_port())
    broker.start()
    influx.start()
    try:
        yield Rig(broker, influx, tmp_path)
    finally:
        broker.stop()
        influx.stop()


def assert_all_stored(rig: Rig, stream: Stream, timeout: float = 90) -> None:
    """InfluxDB ends up holding exactly the published points: none missing, none extra."""
    with InfluxClient(rig.influx.url, DB) as client:

        def complete() -> bool:
            try:
                return len(stored_points(client)) >= len(stream.expected)
            except Exception:
                return False

        assert wait_for(complete, timeout, interval=1.0), rig.logs()
        stored = stored_points(client)
    missing = stream.expected.keys() - stored.keys()
    extra = stored.keys() - stream.expected.keys()
    assert not missing and not extra, (len(missing), len(extra), rig.logs())
    assert stored == stream.expected


def sigkill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_collector_sigkilled_five_times(rig: Rig) -> None:
    rng = random.Random(20261128)
    stream = Stream(rig.broker.url, "killcity", rate=1000)
    with ExitStack() as stack:
        process = stack.enter_context(rig.collector("a"))
        time.sleep(1.5)
        stream.start()
        for _ in range(5):
            time.sleep(rng.uniform(0.5, 1.8))
            sigkill(process)
            process = stack.enter_context(rig.collector("a"))
        stream.join()
        assert_all_stored(rig, stream)


def test_broker_restarted_mid_stream(rig: Rig) -> None:
    stream = Stream(rig.broker.url, "brokercity", rate=1000)
    with rig.collector("a"):
        time.sleep(1.5)
        stream.start()
        stream.wait_progress(0.4)
        rig.broker.stop()
        time.sleep(1.0)
        rig.broker.start()
        stream.join()
        assert_all_stored(rig, stream)


def test_influxdb_down_for_20_seconds_then_spool_drains(rig: Rig) -> None:
    stream = Stream(rig.broker.url, "influxcity", rate=1000)
    port = free_port()
    with rig.collector("a", metrics_port=port):
        time.sleep(1.5)
        stream.start()
        stream.wait_progress(0.3)
        rig.influx.stop()
        time.sleep(20)
        spooled = scrape(port).get("pantau_readings_spooled_total", 0)
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
            self._answer(503, b'{"error":"overloaded"}')
            return
        if self.mode == "slow" and self.path.startswith("/write"):
            time.sleep(2.5)  # beyond the collector's 1 s timeout; the write still happens
        response = httpx.request(method, self.upstream + self.path, content=body, timeout=30)
        self._answer(response.status_code, response.content)

    def _answer(self, status: int, content: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the collector timed out and left

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_influxdb_slow_or_failing_with_5xx(rig: Rig) -> None:
    handler = type("Flaky", (_FlakyInflux,), {"upstream": rig.influx.url, "mode": "pass"})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    stream = Stream(rig.broker.url, "flakycity", rate=1000)
    port = free_port()
    try:
        with rig.collector(
            "a", influx_url=proxy_url, metrics_port=port, env={"PANTAU_INFLUX_TIMEOUT_S": "1"}
        ):
            time.sleep(1.5)
            stream.start()
            stream.wait_progress(0.2)
            handler.mode = "503"
            time.sleep(4)
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


def test_two_collectors_share_the_stream_and_one_is_killed(rig: Rig) -> None:
    stream = Stream(rig.broker.url, "sharecity", rate=1000)
    with ExitStack() as stack:
        stack.enter_context(rig.collector("a", share=True))
        b = stack.enter_context(rig.collector("b", share=True))
        time.sleep(1.5)
        stream.start()
        stream.wait_progress(0.4)
        sigkill(b)
        time.sleep(2.0)  # Mosquitto keeps queueing b's share while its session lives
        stack.enter_context(rig.collector("b", share=True))
        stream.join()
        assert_all_stored(rig, stream)


def test_full_spool_holds_acks_and_the_broker_keeps_the_backlog(rig: Rig) -> None:
    stream = Stream(rig.broker.url, "fullcity", rate=1000)
    port = free_port()
    with rig.collector("a", metrics_port=port, spool_max=200_000):
        time.sleep(1.5)
        rig.influx.stop()
        stream.start()
        assert wait_for(lambda: scrape(port).get("pantau_spool_full") == 1, 60), rig.logs()
        metrics = scrape(port)
        assert metrics["pantau_spool_bytes"] <= 200_000
        stream.join()  # the broker took every message although the collector cannot store them
        assert scrape(port)["pantau_spool_full"] == 1
        rig.influx.start()
        assert_all_stored(rig, stream)
        assert "spool full" in rig.logs()
