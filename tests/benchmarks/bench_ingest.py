"""Ingest benchmark: `pantau ingest` against a bare paho subscriber, same broker, same burst.

Run: .venv/bin/python tests/benchmarks/bench_ingest.py [--messages 200000] [--batch 50]
     [--workers 2] [--skip-baseline]

For each consumer the burst is queued in the broker first (the consumer's persistent session
exists but is offline), then the consumer starts and drains it, so the publisher's own speed does
not enter the figures. Printed per consumer: messages/s and readings/s from its first received
message to its last, CPU microseconds per message (process CPU minus the CPU of an idle start of
the same program), and peak RSS. The bare subscriber acknowledges on receipt and stores
nothing; the collector acknowledges only after the InfluxDB write.

With --workers N, the single-reading burst is also drained by `pantau ingest --workers 1` and
`--workers N` with the fleet's registry (18 districts), each without and with partition 1's
catch-all; CPU and RSS are then the sums over the supervisor and its workers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.dev import InfluxDBService, MosquittoService, free_port
from pantau.registry import Device, Registry

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


def _tree(pid: int) -> list[int]:
    """A process and its descendants (the workers of `--workers N`)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants."""
    total = 0.0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process, summed over it and its descendants."""
    total = 0.0
    for member in _tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


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
    profile: Path | None = None,
) -> Result:
    """Idle start (session + startup CPU), queue the burst, then time the drain.

    With `profile`, py-spy samples the measured process (not the idle start) into that file.
    """
    idle = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)
    idle_cpu = cpu_seconds(idle.pid)
    idle.send_signal(signal.SIGTERM)
    idle.wait(15)
    publish_burst(broker_port, burst)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(process.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
        )
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
        time.sleep(0.05)  # each poll costs the consumer a /metrics render
    if first is None or last is None:
        process.kill()
        raise RuntimeError(f"{name}: did not finish ({progress()} of {target})")
    cpu = cpu_seconds(process.pid) - idle_cpu
    rss = peak_rss_mb(process.pid)
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
        spy.wait(60)
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    return Result(name, len(burst), readings, last - first, cpu, rss)


def metric(port: int, name: str, kind: str | None = None) -> int:
    """A counter of the collector's /metrics (with a kind label if given), 0 while not up."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return 0
    wanted = name + " " if kind is None else f'{name}{{kind="{kind}"}} '
    for line in text.splitlines():
        if line.startswith(wanted):
            return int(float(line.split()[1]))
    return 0


def write_registry(city: str, path: Path) -> None:
    """The registry of make_burst's fleet: 1,000 stations in 18 districts."""
    Registry(
        Device(f"aq-{d:04d}", "air_quality", city, f"d{d % 18:02d}", -7.3, 109.3, 60.0)
        for d in range(1000)
    ).write_csv(path)


def ingest_argv(
    broker: MosquittoService, influx: InfluxDBService, city: str, topic: str, metrics_port: int
) -> list[str]:
    """`pantau ingest` into database `city`, client id from the city, metrics on a port."""
    return [
        PANTAU,
        "ingest",
        "--mqtt",
        broker.url,
        "--influx",
        influx.url,
        "--db",
        city,
        "--topic",
        topic,
        "--client-id",
        f"collector-{city}",
        "--metrics-port",
        str(metrics_port),
    ]


def run_workers(
    args: argparse.Namespace, broker: MosquittoService, influx: InfluxDBService, root: Path
) -> None:
    """The single-reading burst through `--workers 1` and `--workers N`, catch-all off and on."""
    layouts = [(1, False)] + [(args.workers, c) for c in (False, True)]
    for n, catch_all in layouts:
        city = f"w{uuid.uuid4().hex[:8]}"
        registry = root / f"registry-{city}.csv"
        write_registry(city, registry)
        burst = make_burst(city, args.messages, 1)
        port = free_port() if n == 1 else _free_run(n)
        argv = [
            *ingest_argv(broker, influx, city, f"city/{city}/+/+/+", port),
            "--registry",
            str(registry),
            "--spool-dir",
            str(root / f"spool-{city}"),
            "--workers",
            str(n),
            "--catch-all" if catch_all else "--no-catch-all",
        ]

        def progress(first: int = port, n: int = n) -> int:
            return sum(
                metric(first + k, "pantau_readings_written_total", "air_quality") for k in range(n)
            )

        label = f"--workers {n}" + (" (catch-all)" if catch_all and n > 1 else "")
        result = run_consumer(
            f"pantau ingest {label}", argv, progress, len(burst), burst, broker.port, len(burst)
        )
        print(result.line())


def _free_run(n: int) -> int:
    """A free port P with P+1..P+n-1 free too."""
    for _ in range(100):
        port = free_port()
        try:
            for k in range(1, n):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + k))
        except OSError:
            continue
        return port
    raise RuntimeError("no run of free ports")


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
        "--workers", type=int, default=0, help="also compare --workers 1 with --workers N"
    )
    parser.add_argument("--only-workers", action="store_true", help="skip the other consumers")
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
            if args.workers:
                run_workers(args, broker, influx, root)
            consumers = (
                []
                if args.only_workers
                else [
                    (1, args.messages),
                    (args.batch, args.messages // args.batch),
                ]
            )
            for per_message, count in consumers:
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
                collector = ingest_argv(broker, influx, city, f"city/{city}/#", metrics_port)
                results.append(
                    run_consumer(
                        f"pantau ingest ({label})",
                        collector,
                        partial(metric, metrics_port, "pantau_messages_acked_total"),
                        count,
                        burst,
                        broker.port,
                        count * per_message,
                        None if args.profile is None else args.profile / f"ingest-{label}.txt",
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
