"""Ingest benchmark: `pantau ingest` against a bare paho subscriber, same broker, same burst.

Run: .venv/bin/python tests/benchmarks/bench_ingest.py [--messages 200000] [--batch 50]

For each consumer the burst is queued in the broker first (the consumer's persistent session
exists but is offline), then the consumer starts and drains it, so the publisher's own speed does
not enter the figures. Printed per consumer: messages/s and readings/s from its first received
message to its last, CPU microseconds per message (process CPU minus the CPU of an idle start of
the same program), and peak RSS. The bare subscriber acknowledges on receipt and stores
nothing; the collector acknowledges only after the InfluxDB write.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.dev import InfluxDBService, MosquittoService, free_port

HERE = Path(__file__).resolve().parent
PANTAU = str(Path(sys.executable).with_name("pantau"))
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """Figures of one consumer run."""

    name: str
    messages: int
    readings: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float

    def line(self) -> str:
        """One printed row."""
        return (
            f"{self.name:<28} {self.messages / self.seconds:>10,.0f} msg/s "
            f"{self.readings / self.seconds:>10,.0f} readings/s "
            f"{self.cpu_s / self.messages * 1e6:>7.1f} us CPU/msg "
            f"{self.peak_rss_mb:>7.1f} MB peak RSS"
        )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def publish_burst(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Queue the burst in the broker at QoS 1."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    # Packet ids wrap at 65,535: never have more than 30,000 unacknowledged publishes.
    infos: list[mqtt.MQTTMessageInfo] = []
    for topic, payload in messages:
        if len(infos) >= 30_000:
            infos.pop(0).wait_for_publish(120)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def make_burst(city: str, messages: int, per_message: int) -> list[tuple[str, bytes]]:
    """Air-quality messages of ~110 bytes each (single) or gateway batches."""
    start = time.time() - 86400
    out = []
    for i in range(messages):
        device = i % 1000
        topic = f"city/{city}/d{device % 18:02d}/air_quality/aq-{device:04d}"
        # Each device reports once a minute: realistic for the detectors downstream.
        readings = [
            {
                "ts": round(start - 86400 * 30 + ((i // 1000) * per_message + k) * 60.0, 3),
                "pm25": round(10 + (i + k) % 400 / 10, 1),
                "pm10": round(20 + (i + k) % 700 / 10, 1),
                "no2": 21.5,
            }
            for k in range(per_message)
        ]
        body = readings[0] if per_message == 1 else readings
        out.append((topic, json.dumps(body, separators=(",", ":")).encode()))
    return out


def run_consumer(
    name: str,
    argv: list[str],
    progress: Callable[[], int],
    target: int,
    burst: list[tuple[str, bytes]],
    broker_port: int,
    readings: int,
) -> Result:
    """Idle start (session + startup CPU), queue the burst, then time the drain."""
    idle = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)
    idle_cpu = cpu_seconds(idle.pid)
    idle.send_signal(signal.SIGTERM)
    idle.wait(15)
    publish_burst(broker_port, burst)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = last = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = progress()
        now = time.monotonic()
        if done > 0 and first is None:
            first = now
        if done >= target:
            last = now
            break
        time.sleep(0.01)
    if first is None or last is None:
        process.kill()
        raise RuntimeError(f"{name}: did not finish ({progress()} of {target})")
    cpu = cpu_seconds(process.pid) - idle_cpu
    rss = peak_rss_mb(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    return Result(name, len(burst), readings, last - first, cpu, rss)


def metric(port: int, name: str) -> int:
    """A counter of the collector's /metrics, 0 while it is not up."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def influx_alone(url: str, db: str, points: int, batch: int = 5000) -> float:
    """Points/s InfluxDB takes from one writer of pre-encoded 5,000-line bodies (the ceiling)."""
    httpx.post(f"{url}/query", params={"q": f'CREATE DATABASE "{db}"'})
    start_ns = (int(time.time()) - 86400) * 10**9
    bodies = [
        "\n".join(
            f"air_quality,city=x,district=d{i % 18:02d},device_id=aq-{i % 1000:04d} "
            f"pm25={10 + i % 400 / 10},pm10={20 + i % 700 / 10},no2=21.5 {start_ns + i * 10**7}"
            for i in range(first, first + batch)
        ).encode()
        for first in range(0, points, batch)
    ]
    with httpx.Client(base_url=url, timeout=60) as client:
        began = time.perf_counter()
        for body in bodies:
            client.post("/write", params={"db": db, "precision": "n"}, content=body)
        return points / (time.perf_counter() - began)


def main() -> None:
    """Run both consumers for single-reading messages and for gateway batches."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50, help="readings per gateway message")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder: run the collector under py-spy (pip install py-spy), collapsed stacks there",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp:
        root = Path(tmp)
        broker = MosquittoService(root, free_port())
        influx = InfluxDBService(root, free_port())
        broker.start()
        influx.start()
        try:
            results: list[Result] = []
            rate = influx_alone(influx.url, "ceiling", args.messages)
            print(f"InfluxDB alone (one writer, 5,000-line bodies): {rate:,.0f} points/s")
            for per_message, count in (
                (1, args.messages),
                (args.batch, args.messages // args.batch),
            ):
                city = f"b{uuid.uuid4().hex[:8]}"
                burst = make_burst(city, count, per_message)
                size = sum(len(p) for _, p in burst) / len(burst)
                label = "single" if per_message == 1 else f"batch{per_message}"
                print(
                    f"-- {label}: {count:,} messages of ~{size:.0f} bytes, "
                    f"{count * per_message:,} readings"
                )
                if not args.skip_baseline:
                    count_file = root / f"count-{city}"
                    count_file.write_text("0")
                    bare = [
                        sys.executable,
                        str(HERE / "bare_subscriber.py"),
                        "--port",
                        str(broker.port),
                        "--topic",
                        f"city/{city}/#",
                        "--client-id",
                        f"bare-{city}",
                        "--count-file",
                        str(count_file),
                    ]

                    def bare_progress(path: Path = count_file) -> int:
                        text = path.read_text().strip()
                        return int(text) if text else 0

                    results.append(
                        run_consumer(
                            f"bare paho ({label})",
                            bare,
                            bare_progress,
                            count,
                            burst,
                            broker.port,
                            count * per_message,
                        )
                    )
                    print(results[-1].line())
                metrics_port = free_port()
                collector = [
                    PANTAU,
                    "ingest",
                    "--mqtt",
                    broker.url,
                    "--influx",
                    influx.url,
                    "--db",
                    city,
                    "--topic",
                    f"city/{city}/#",
                    "--client-id",
                    f"collector-{city}",
                    "--metrics-port",
                    str(metrics_port),
                ]
                if args.profile is not None:  # figures of a profiled run are not comparable
                    spy = str(Path(sys.executable).with_name("py-spy"))
                    out = args.profile / f"ingest-{label}.txt"
                    collector = [spy, "record", "--format", "raw", "-o", str(out), "--", *collector]
                results.append(
                    run_consumer(
                        f"pantau ingest ({label})",
                        collector,
                        lambda p=metrics_port: metric(p, "pantau_messages_acked_total"),
                        count,
                        burst,
                        broker.port,
                        count * per_message,
                    )
                )
                print(results[-1].line())
                stored = httpx.get(
                    f"{influx.url}/query",
                    params={"db": city, "q": 'SELECT count("pm25") FROM "air_quality"'},
                ).json()
                n = stored["results"][0]["series"][0]["values"][0][1]
                print(f"   InfluxDB holds {n:,} of {count * per_message:,} readings")
        finally:
            broker.stop()
            influx.stop()


if __name__ == "__main__":
    main()
