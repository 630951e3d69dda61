"""API benchmark: p50/p99 of the indicator and dimension endpoints at 100 clients, vs /health.

Run (from the repository root, `wrk` installed: `apt-get install wrk`):

    .venv/bin/python -m tests.benchmarks.bench_api [--devices 1000] [--interval 5]
        [--connections 100] [--duration 10] [--rounds 2]

It starts everything it needs on free ports in a private temporary folder: Mosquitto, InfluxDB,
one collector (`pantau ingest`), one API (`pantau api`) and a fleet publisher (a separate
process: air stations, river gauges with registry thresholds, streetlights; every device
publishes a reading with ts = now every --interval seconds, during the whole measurement, so the
live state keeps changing). The load generator is `wrk` (its own process, not the API's event
loop) with --connections keep-alive connections and a read-scope Bearer token on every request,
/health included (the API's per-token rate limit is turned off: one token stands for them
all). Each round measures each endpoint in turn for --duration seconds. The table gives
p50/p90/p99/max latency and req/s per endpoint and p99 / p99(/health) (target: <= 2).
All processes share the machine's cores, so the figures are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.tokens import Scope, TokenStore
from pantau.dev import InfluxDBService, MosquittoService, free_port
from pantau.registry import Registry
from simulators.fleet import purbalingga_fleet, with_interval
from tests.api_helpers import ApiProcess, running_api
from tests.ingest_helpers import running_collector, scrape, wait_for

CITY = "purbalingga"
ENDPOINTS = ("/health", "/api/v1/indicators/regency", "/api/v1/indicators", "/api/v1/dimensions")
NOISE_NOTE = (
    f"machine: {os.cpu_count()} cores shared by broker, InfluxDB, collector, API, publisher and "
    "load generator (and whatever else runs): figures are noisy; compare rows of one run"
)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ----------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class CpuMeter:
    """CPU use of named processes between two marks, as % of one core."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._at = 0.0

    def mark(self) -> None:
        """Start a measurement window."""
        self._at = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def percent(self) -> dict[str, float]:
        """% of one core each process used since the mark."""
        elapsed = max(time.monotonic() - self._at, 1e-9)
        return {
            name: 100.0 * (cpu_seconds(pid) - self._start.get(name, 0.0)) / elapsed
            for name, pid in self.pids.items()
        }


def format_cpu(percent: dict[str, float]) -> str:
    """`api 93% collector 41% ...`"""
    return "  ".join(f"{name} {value:.0f}%" for name, value in percent.items())


# -- the fleet ----------------------------------------------------------------------------------


def make_fleet(devices: int, interval_s: float) -> Registry:
    """About `devices` devices (a third of each kind) over Purbalingga's 18 districts."""
    return with_interval(purbalingga_fleet(CITY, max(1, math.ceil(devices / 3))), interval_s)


class _Values:
    """Plausible readings per kind, smooth in time (no noise: at 1 Hz any noise would trip the
    rate-of-change detector); a tenth of the gauges rise and a few lamps fail, so state changes.
    """

    def __init__(self, registry: Registry, seed: int) -> None:
        rng = random.Random(seed)
        self.start = time.time()
        self.energy: dict[str, float] = {}
        self.facts = {d.device_id: d for d in registry}
        self.phase = {
            d.device_id: zlib.crc32(d.device_id.encode()) / 2**32 * 6.28 for d in registry
        }
        self.rising = {
            d.device_id for d in registry if d.kind == "water_level" and rng.random() < 0.1
        }
        self.broken = {
            d.device_id for d in registry if d.kind == "streetlight" and rng.random() < 0.05
        }

    def reading(self, device_id: str, kind: str, now: float) -> dict[str, float]:
        """One reading of a device at `now`."""
        slow = math.sin(now / 7200.0 + self.phase[device_id])  # a period of ~12.6 h
        if kind == "air_quality":
            pm25 = 40.0 + 20.0 * slow
            return {
                "pm25": pm25,
                "pm10": pm25 * 1.6,
                "so2": 20.0 + 5.0 * slow,
                "no2": 30.0 + 8.0 * slow,
                "o3": 60.0 - 15.0 * slow,
                "co": 900.0 + 150.0 * slow,
                "hc": 40.0 + 10.0 * slow,
                "temperature": 28.0 + 2.0 * slow,
                "humidity": 80.0 - 5.0 * slow,
            }
        device = self.facts[device_id]
        if kind == "water_level":
            level = (0.6 + 0.05 * slow) * (device.waspada_cm or 200.0)
            if device_id in self.rising:  # 1.8 m/h: crosses Waspada within minutes
                level += (now - self.start) * 0.05
            return {"level_cm": min(level, 1900.0), "rain_mm": 0.0, "battery_v": 12.6 + 0.1 * slow}
        hour = (now / 3600.0 + 7.0) % 24.0  # WIB
        night = hour < 6.0 or hour >= 18.0
        on = 1.0 if night and device_id not in self.broken else 0.0
        power = (device.rated_w or 60.0) * (0.98 + 0.02 * slow) * on
        energy = self.energy.get(device_id, 1000.0) + power / 3600.0 * device.interval_s
        self.energy[device_id] = energy
        return {
            "lamp_on": on,
            "dim_pct": 100.0 * on,
            "power_w": power,
            "voltage_v": 220.0 + 3.0 * slow,
            "current_a": power / (220.0 + 3.0 * slow),
            "energy_wh": energy,
            "lux": 2.0 if night else 20000.0 + 5000.0 * slow,
        }


_INFLIGHT = 1000


def publish_fleet(
    mqtt_url: str, registry_csv: str, stop: Any, results: Any, acked_total: Any, seed: int = 0
) -> None:
    """Every device publishes one reading (QoS 1, ts = now) per interval until `stop` is set.

    At most _INFLIGHT publishes wait for their PUBACK: a publisher that cannot keep up falls
    behind its schedule (reported as lag) instead of queueing readings after stamping them.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from pantau.settings import mqtt_endpoint

    registry = Registry.from_csv(Path(registry_csv))
    devices = sorted(registry, key=lambda d: d.device_id)
    interval = devices[0].interval_s
    values = _Values(registry, seed)
    rng = random.Random(seed)
    phases = sorted(
        (
            rng.random() * interval,
            d.device_id,
            d.kind,
            f"city/{d.city}/{d.district}/{d.kind}/{d.device_id}",
        )
        for d in devices
    )
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked % 50 == 0:
            acked_total.value = acked

    endpoint = mqtt_endpoint(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-fleet-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_publish = on_publish
    client.max_inflight_messages_set(_INFLIGHT)
    client.max_queued_messages_set(0)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    published, lags = 0, []
    start = time.time() + 0.2
    cycle, index = 0, 0
    try:
        while not stop.is_set():
            phase, device_id, kind, topic = phases[index]
            due = start + cycle * interval + phase
            now = time.time()
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            if published - acked >= _INFLIGHT:
                time.sleep(0.001)
                continue
            lags.append(now - due)
            payload = {"ts": now, **values.reading(device_id, kind, now)}
            client.publish(topic, json.dumps(payload).encode(), qos=1)
            published += 1
            index += 1
            if index == len(phases):
                index, cycle = 0, cycle + 1
        deadline = time.monotonic() + 10
        while acked < published and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
        lags.sort()
        results.put(
            {
                "published": published,
                "acked": acked,
                "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
                "lag_max": lags[-1] if lags else 0.0,
            }
        )


@dataclass
class Fleet:
    """A running fleet publisher process."""

    process: multiprocessing.process.BaseProcess
    stop: Any
    results: Any
    acked: Any  # a shared counter, updated every 50 PUBACKs
    summary: dict[str, float] = field(default_factory=dict)

    def finish(self) -> dict[str, float]:
        """Stop publishing; what was published and acknowledged, and the publisher's lag."""
        if not self.summary:
            self.stop.set()
            with contextlib.suppress(Exception):
                self.summary = self.results.get(timeout=30)
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
        return self.summary


@contextlib.contextmanager
def fleet_publishers(mqtt_url: str, registry: Path, processes: int = 1) -> Iterator[list[Fleet]]:
    """`processes` publisher processes, each publishing its share of the registry."""
    context = multiprocessing.get_context("spawn")
    devices = list(Registry.from_csv(registry))
    fleets: list[Fleet] = []
    try:
        for n in range(processes):
            share = registry.with_name(f"{registry.stem}-share{n}.csv")
            Registry(devices[n::processes]).write_csv(share)
            stop, results, acked = context.Event(), context.Queue(), context.Value("q", 0)
            process = context.Process(
                target=publish_fleet,
                args=(mqtt_url, str(share), stop, results, acked, n),
                name=f"bench-fleet-{n}",
                daemon=True,
            )
            process.start()
            fleets.append(Fleet(process, stop, results, acked))
        yield fleets
    finally:
        for fleet in fleets:
            fleet.finish()


# -- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """Broker, InfluxDB, one collector and one API over a fleet's registry."""

    root: Path
    broker: MosquittoService
    influx: InfluxDBService
    registry: Path
    collector: subprocess.Popen[bytes]
    collector_metrics_port: int
    collector_log: Path
    api: ApiProcess
    token: str  # read scope

    def pids(self) -> dict[str, int | None]:
        """Process ids by role."""
        return {
            "api": self.api.process.pid,
            "collector": self.collector.pid,
            "mosquitto": self.broker.pid,
            "influxd": self.influx.pid,
        }

    def readings_written(self) -> float:
        """Readings the collector has written to InfluxDB so far."""
        metrics = scrape(self.collector_metrics_port)
        return sum(v for k, v in metrics.items() if k.startswith("pantau_readings_written_total"))

    def tails(self) -> str:
        """The end of the collector's and the API's logs, for failures."""
        collector = self.collector_log.read_text(errors="replace")[-1500:]
        return f"--- collector log\n{collector}\n--- api log\n{self.api.log()[-1500:]}"


@contextlib.contextmanager
def running_stack(registry: Registry, root: Path, *, keep: bool = False) -> Iterator[Stack]:
    """Start broker, InfluxDB, collector and API in `root`; stop them all on exit.

    On an error the collector's and API's log tails are printed; unless `keep`, `root` and the
    API's own log folder are removed afterwards.
    """
    broker = MosquittoService(root, free_port())
    influx = InfluxDBService(root, free_port())
    db = "bench"
    registry_csv = root / "registry.csv"
    registry.write_csv(registry_csv)
    tokens_file = root / "tokens.json"
    token = TokenStore(tokens_file).create(Scope.READ, "bench")[0]
    metrics_port = free_port()
    collector_log = root / "collector.log"
    api_logs: Path | None = None
    try:
        broker.start()
        influx.start()
        response = httpx.post(
            f"{influx.url}/query", data={"q": f'CREATE DATABASE "{db}"'}, trust_env=False
        )
        response.raise_for_status()
        with (
            running_collector(
                broker.url,
                influx.url,
                db,
                topic=f"city/{CITY}/#",
                registry=registry_csv,
                client_id="bench-collector",
                log_path=collector_log,
                spool_dir=root / "spool",
                extra_args=["--metrics-port", str(metrics_port)],
            ) as collector,
            running_api(
                broker.url,
                influx.url,
                db,
                city=CITY,
                registry=registry_csv,
                tokens_file=tokens_file,
                # One token stands for every simulated client: no per-token rate limit.
                env={"PANTAU_API_RATE_PER_S": "0"},
            ) as api,
        ):
            api_logs = api.log_path.parent  # running_api keeps its log in a folder of its own
            stack = Stack(
                root,
                broker,
                influx,
                registry_csv,
                collector,
                metrics_port,
                collector_log,
                api,
                token,
            )
            try:
                yield stack
            except BaseException:
                print(stack.tails(), file=sys.stderr)
                raise
    finally:
        for service in (influx, broker):
            with contextlib.suppress(Exception):
                service.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
            if api_logs is not None:
                shutil.rmtree(api_logs, ignore_errors=True)


def wait_until_live(stack: Stack, devices: int, interval: float, timeout: float) -> str:
    """Wait until most devices report, the regency has all three kinds and the API is current.

    Current: the median device's newest reading in the API is younger than 2 intervals + 2 s
    (a start-up burst, e.g. every device's first dropout anomaly, has been digested).
    """
    headers = {"Authorization": f"Bearer {stack.token}"}
    status = "not live"

    def get(path: str) -> Any:
        url = f"{stack.api.url}{path}"
        return httpx.get(url, headers=headers, timeout=10, trust_env=False).json()

    def live() -> bool:
        nonlocal status
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            seen = sorted(
                d["last_seen"] for d in get("/api/v1/devices")["devices"] if d["last_seen"]
            )
            regency = get("/api/v1/indicators/regency")
            indicators = int(get("/api/v1/indicators")["count"])
            age = time.time() - seen[len(seen) // 2] if seen else math.inf
            status = (
                f"{len(seen)} devices reporting, {indicators} per-device indicators, "
                f"median newest reading {age:.1f} s old"
            )
            kinds = ("air_quality", "water_level", "streetlight")
            return (
                len(seen) >= 0.95 * devices
                and all(regency.get(k) is not None for k in kinds)
                and age < 2 * interval + 2.0
            )
        return False

    if not wait_for(live, timeout, interval=1.0):
        status += f" (gave up waiting after {timeout:.0f} s)"
    return status


# -- load generation ----------------------------------------------------------------------------

_WRK_SCRIPT = """\
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%%d,"duration_us":%%d,"status":%%d,"timeout":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"p50":%%d,"p90":%%d,"p99":%%d,"max":%%d,"mean":%%f}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.timeout,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


@dataclass
class Phase:
    """One endpoint's run under load."""

    endpoint: str
    round: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    wrk: str, url: str, script: Path, connections: int, threads: int, duration: float
) -> dict[str, float]:
    """One wrk run; its summary (latencies in microseconds)."""
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "30s"]
    done = subprocess.run(
        [*args, "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")


def measure(stack: Stack, wrk: str, cpu: CpuMeter, args: argparse.Namespace) -> list[Phase]:
    """Every endpoint, --rounds times, in turn."""
    script = stack.root / "bearer.lua"
    script.write_text(_WRK_SCRIPT % stack.token)
    phases = []
    for n in range(args.rounds):
        for endpoint in ENDPOINTS:
            cpu.mark()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = run_wrk(
                wrk, stack.api.url + endpoint, script, args.connections, args.threads, args.duration
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            percent = cpu.percent()
            wrk_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
            percent["wrk"] = 100.0 * wrk_cpu / args.duration
            errors = sum(int(result[k]) for k in ("status", "timeout", "connect", "read", "write"))
            phase = Phase(
                endpoint,
                n + 1,
                int(result["requests"]),
                result["duration_us"] / 1e6,
                errors,
                result["p50"] / 1e3,
                result["p90"] / 1e3,
                result["p99"] / 1e3,
                result["max"] / 1e3,
                percent,
            )
            phases.append(phase)
            print(
                f"  round {phase.round} {endpoint:<28} {phase.rate:8.0f} req/s  p99 "
                f"{phase.p99_ms:7.1f} ms  cpu: {format_cpu(percent)}",
                flush=True,
            )
    return phases


def check_endpoints(stack: Stack) -> dict[str, int]:
    """Every endpoint answers 200 with the token; its body size in bytes."""
    sizes = {}
    headers = {"Authorization": f"Bearer {stack.token}"}
    for endpoint in ENDPOINTS:
        response = httpx.get(stack.api.url + endpoint, headers=headers, timeout=30, trust_env=False)
        if response.status_code != 200:
            raise RuntimeError(f"{endpoint}: {response.status_code} {response.text[:300]}")
        sizes[endpoint] = len(response.content)
    return sizes


def print_table(phases: list[Phase], sizes: dict[str, int]) -> None:
    """One row per endpoint and round; the ratio to /health of the same round."""
    print()
    print(
        f"{'endpoint':<28} {'rnd':>3} {'bytes':>7} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'err':>4} {'p99/health':>10}  api cpu"
    )
    base = {p.round: p.p99_ms for p in phases if p.endpoint == "/health"}
    for p in sorted(phases, key=lambda p: (ENDPOINTS.index(p.endpoint), p.round)):
        ratio = p.p99_ms / base[p.round] if base.get(p.round) else float("nan")
        verdict = "" if p.endpoint == "/health" else (" ok" if ratio <= 2.0 else " MISSED")
        print(
            f"{p.endpoint:<28} {p.round:>3} {sizes.get(p.endpoint, 0):>7} {p.rate:>7.0f} "
            f"{p.p50_ms:>8.1f} {p.p90_ms:>8.1f} {p.p99_ms:>8.1f} {p.max_ms:>8.1f} "
            f"{p.errors:>4} {ratio:>10.2f}{verdict:<7} {p.cpu.get('api', 0):.0f}%"
        )
    print(
        "target: p99 <= 2 x p99(/health) of the same round; err: non-2xx, timeouts, socket errors"
    )


def main() -> None:
    """Parse options, run the stack and the load, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000, help="fleet size (a third per kind)")
    parser.add_argument("--interval", type=float, default=5.0, help="s between a device's readings")
    parser.add_argument("--connections", type=int, default=100, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--duration", type=float, default=10.0, help="s per endpoint and round")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the endpoints")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is needed: apt-get install wrk")

    root = Path(tempfile.mkdtemp(prefix="pantau-bench-api-"))
    registry = make_fleet(args.devices, args.interval)
    print(NOISE_NOTE)
    print(
        f"fleet: {len(registry)} devices, one reading each per {args.interval:g} s "
        f"({len(registry) / args.interval:.0f} readings/s during the run); "
        f"{args.connections} connections; {args.duration:g} s per endpoint x {args.rounds}; "
        f"folder {root}",
        flush=True,
    )
    with (
        running_stack(registry, root, keep=args.keep) as stack,
        fleet_publishers(stack.broker.url, stack.registry) as fleets,
    ):
        live = wait_until_live(stack, len(registry), args.interval, max(90.0, 6 * args.interval))
        print(f"live: {live}", flush=True)
        sizes = check_endpoints(stack)
        written = stack.readings_written()
        began = time.monotonic()
        cpu = CpuMeter(stack.pids() | {"fleet": fleets[0].process.pid})
        phases = measure(stack, wrk, cpu, args)
        ingest_rate = (stack.readings_written() - written) / (time.monotonic() - began)
        summary = fleets[0].finish()
    print_table(phases, sizes)
    print(
        f"ingest during the run: {ingest_rate:.0f} readings/s written "
        f"(fleet published {summary.get('published', 0):.0f}, acked "
        f"{summary.get('acked', 0):.0f}, publisher lag p99 "
        f"{summary.get('lag_p99', 0) * 1e3:.0f} ms)"
    )
    print(NOISE_NOTE)


if __name__ == "__main__":
    main()
