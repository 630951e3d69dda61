"""Live-feed benchmark: reading-to-client latency for 500 WebSocket clients at 2,000 readings/s.

Run (from the repository root):

    .venv/bin/python -m tests.benchmarks.bench_feed [--clients 500] [--devices 2000]
        [--interval 1] [--duration 30] [--client-processes 2] [--types reading]

It starts everything it needs on free ports in a private temporary folder: Mosquitto, InfluxDB,
one collector, one API, a fleet publisher process (every device publishes one QoS 1 reading with
ts = time.time() every --interval seconds: 2,000 devices at 1 s = 2,000 readings/s) and
--client-processes processes holding --clients WebSocket connections to /api/v1/feed/ws
(access_token in the query, filter ?types=...). Over --duration seconds it measures, for every
`reading` event every client receives, client receive time - the reading's ts (the device's
observation time), and prints p50/p90/p99/max, frames and events received, the `dropped` totals,
the collector's ingest rate against the publish rate, and each process's CPU.

The baseline in the same run is the same measurement with a single client, before the 500
connect. Target: p99 <= 1 s with 500 clients. Every process shares the machine's cores, so
figures are noisy; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from tests.benchmarks.bench_api import (
    NOISE_NOTE,
    CpuMeter,
    Fleet,
    Stack,
    fleet_publishers,
    format_cpu,
    make_fleet,
    running_stack,
    wait_until_live,
)

_HEADER = re.compile(rb'\{"seq":(\d+),"dropped":(\d+),')


# -- the clients (run in their own processes) -------------------------------------------------


@dataclass
class ClientTally:
    """What one client process saw in the measurement window."""

    connected: int = 0
    failed: int = 0
    closed_early: int = 0
    frames: int = 0
    events: int = 0
    dropped: int = 0
    # seq -> ts of its reading events; each frame body is the same for every client, so it is
    # parsed once per process, and each client keeps only (seq, receive time).
    reading_ts: dict[int, list[float]] = field(default_factory=dict)
    event_counts: dict[int, int] = field(default_factory=dict)
    received: list[tuple[int, float]] = field(default_factory=list)


async def _one_client(
    url: str,
    tally: ClientTally,
    window: tuple[float, float],
    gate: asyncio.Semaphore,
    deflate: bool,
) -> None:
    """Hold one connection; record (seq, receive time) of every frame within the window."""
    from websockets.asyncio.client import connect

    begin, end = window
    try:
        async with gate:
            socket = await connect(
                url,
                compression="deflate" if deflate else None,
                max_size=None,
                open_timeout=60,
                ping_interval=None,
                max_queue=64,
            )
    except Exception:
        tally.failed += 1
        return
    tally.connected += 1
    try:
        async with socket:
            while True:
                data = await socket.recv(decode=False)
                now = time.time()
                if now > end:
                    return
                if now < begin or not isinstance(data, bytes):
                    continue
                header = _HEADER.match(data)
                if header is None:
                    continue
                seq = int(header.group(1))
                if seq not in tally.event_counts:
                    events = orjson.loads(data)["events"]
                    tally.event_counts[seq] = len(events)
                    tally.reading_ts[seq] = [e["ts"] for e in events if e["type"] == "reading"]
                tally.frames += 1
                tally.events += tally.event_counts[seq]
                tally.dropped += int(header.group(2))
                tally.received.append((seq, now))
    except Exception:
        if time.time() < end:
            tally.closed_early += 1


def run_clients(
    url: str, count: int, window: tuple[float, float], deflate: bool, results: Any
) -> None:
    """A client process: `count` connections until the window ends; the tally to `results`."""

    async def main() -> ClientTally:
        tally = ClientTally()
        gate = asyncio.Semaphore(25)  # connect 25 at a time
        tasks = [
            asyncio.create_task(_one_client(url, tally, window, gate, deflate))
            for _ in range(count)
        ]
        await asyncio.wait(tasks, timeout=max(1.0, window[1] - time.time() + 15))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return tally

    tally = asyncio.run(main())
    results.put(tally)


# -- analysis ---------------------------------------------------------------------------------


@dataclass
class Latency:
    """Latency percentiles over every (client, reading event) pair."""

    samples: int
    p50: float
    p90: float
    p99: float
    max: float


def latency(tallies: list[ClientTally]) -> Latency:
    """Percentiles from a 1 ms histogram of receive time - ts over all clients and events."""
    width, top = 0.001, 120.0
    histogram = np.zeros(int(top / width) + 1, dtype=np.int64)
    worst = 0.0
    for tally in tallies:
        by_seq: dict[int, list[float]] = {}
        for seq, at in tally.received:
            by_seq.setdefault(seq, []).append(at)
        for seq, times in by_seq.items():
            ts = np.asarray(tally.reading_ts.get(seq, ()), dtype=np.float64)
            if not ts.size:
                continue
            delays = np.subtract.outer(np.asarray(times), ts).ravel()
            worst = max(worst, float(delays.max()))
            index = np.clip((delays / width).astype(np.int64), 0, histogram.size - 1)
            histogram += np.bincount(index, minlength=histogram.size)
    total = int(histogram.sum())
    if not total:
        return Latency(0, float("nan"), float("nan"), float("nan"), float("nan"))
    cumulative = np.cumsum(histogram)

    def quantile(q: float) -> float:
        return float(np.searchsorted(cumulative, q * total)) * width + width / 2

    return Latency(total, quantile(0.5), quantile(0.9), quantile(0.99), worst)


@dataclass
class Run:
    """One measurement: clients, latency, counts, ingest and CPU."""

    label: str
    clients: int
    connected: int
    failed: int
    closed_early: int
    latency: Latency
    frames: int
    events: int
    dropped: int
    seconds: float
    written: float  # readings the collector wrote
    offered: float  # readings the broker acknowledged to the fleet
    derived: float  # derived messages the API took from the broker
    anomalies: int  # anomalies the collector wrote
    cpu: dict[str, float]


def api_metric(stack: Stack, name: str) -> float:
    """A counter of the API's /metrics (0 if unreachable)."""
    try:
        text = httpx.get(
            f"{stack.api.url}/metrics",
            timeout=10,
            trust_env=False,
            headers={"Authorization": f"Bearer {stack.token}"},
        ).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(name)
    )


def anomalies_stored(stack: Stack) -> int:
    """Anomalies the collector has written to InfluxDB."""
    answer = httpx.post(
        f"{stack.influx.url}/query",
        trust_env=False,
        timeout=30,
        data={"db": "bench", "q": 'SELECT count("score") FROM "anomaly"'},
    )
    series = answer.json()["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])


def measure(
    stack: Stack,
    args: argparse.Namespace,
    clients: int,
    processes: int,
    label: str,
    pids: dict[str, int | None],
    fleets: list[Fleet],
) -> Run:
    """Connect `clients` in `processes` processes, measure for --duration seconds, tally."""
    query = f"access_token={stack.token}" + (f"&types={args.types}" if args.types else "")
    url = stack.api.url.replace("http://", "ws://") + f"/api/v1/feed/ws?{query}"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    # Processes start (imports), connect, then the window opens.
    settle = max(args.warmup, 3.0 + clients / 100.0)
    begin = time.time() + settle
    window = (begin, begin + args.duration)
    shares = [
        clients // processes + (1 if n < clients % processes else 0) for n in range(processes)
    ]
    workers = [
        context.Process(
            target=run_clients,
            args=(url, share, window, not args.no_deflate, results),
            name=f"bench-feed-clients-{n}",
            daemon=True,
        )
        for n, share in enumerate(shares)
        if share
    ]
    for worker in workers:
        worker.start()
    tallies: list[ClientTally] = []
    try:
        meter = CpuMeter(pids | {f"clients{n}": w.pid for n, w in enumerate(workers)})
        time.sleep(max(0.0, begin - time.time()))
        meter.mark()
        written = stack.readings_written()
        offered = sum(f.acked.value for f in fleets)
        derived = api_metric(stack, "pantau_api_derived_messages_total")
        anomalies = anomalies_stored(stack)
        time.sleep(max(0.0, window[1] - time.time()))
        cpu = meter.percent()
        written = stack.readings_written() - written
        offered = sum(f.acked.value for f in fleets) - offered
        derived = api_metric(stack, "pantau_api_derived_messages_total") - derived
        anomalies = anomalies_stored(stack) - anomalies
        for _ in workers:
            tallies.append(results.get(timeout=60))
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    run = Run(
        label,
        clients,
        connected=sum(t.connected for t in tallies),
        failed=sum(t.failed for t in tallies),
        closed_early=sum(t.closed_early for t in tallies),
        latency=latency(tallies),
        frames=sum(t.frames for t in tallies),
        events=sum(t.events for t in tallies),
        dropped=sum(t.dropped for t in tallies),
        seconds=args.duration,
        written=written,
        offered=offered,
        derived=derived,
        anomalies=anomalies,
        cpu=cpu,
    )
    print(
        f"  {label}: {run.connected}/{clients} connected, p99 {run.latency.p99 * 1e3:.0f} ms, "
        f"cpu: {format_cpu(cpu)}",
        flush=True,
    )
    return run


def print_table(runs: list[Run], target_s: float) -> None:
    """One row per run, then ingest and CPU."""
    print()
    print(
        f"{'run':<10} {'clients':>8} {'samples':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'frames/s':>9} {'events/s':>10} {'dropped':>8} {'ingest/s':>9}  "
        f"p99 target"
    )
    for r in runs:
        lat = r.latency
        verdict = "ok" if lat.p99 <= target_s else "MISSED"
        print(
            f"{r.label:<10} {r.connected:>4}/{r.clients:<3} {lat.samples:>10} "
            f"{lat.p50 * 1e3:>8.0f} {lat.p90 * 1e3:>8.0f} {lat.p99 * 1e3:>8.0f} "
            f"{lat.max * 1e3:>8.0f} {r.frames / r.seconds:>9.0f} {r.events / r.seconds:>10.0f} "
            f"{r.dropped:>8} {r.written / r.seconds:>9.0f}  "
            f"<= {target_s * 1e3:.0f} ms {verdict}"
        )
    print("pipeline rates during each window (per second):")
    for r in runs:
        print(
            f"  {r.label:<10} fleet acked {r.offered / r.seconds:.0f}, collector wrote "
            f"{r.written / r.seconds:.0f}, API took {r.derived / r.seconds:.0f} derived "
            f"messages, {r.anomalies / r.seconds:.1f} anomalies written"
        )
    print("cpu (% of one core) during each window:")
    for r in runs:
        print(f"  {r.label:<10} {format_cpu(r.cpu)}")
        if r.failed or r.closed_early:
            print(f"  {r.label:<10} {r.failed} connections failed, {r.closed_early} closed early")


def main() -> None:
    """Parse options, run the stack, the fleet and the clients, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=500, help="WebSocket clients")
    parser.add_argument("--client-processes", type=int, default=2, help="processes holding them")
    parser.add_argument("--devices", type=int, default=2000, help="fleet size (a third per kind)")
    parser.add_argument("--interval", type=float, default=1.0, help="s between a device's readings")
    parser.add_argument("--publishers", type=int, default=2, help="fleet publisher processes")
    parser.add_argument("--duration", type=float, default=30.0, help="s measured per run")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="s between connecting and measuring"
    )
    parser.add_argument("--types", default="reading", help="feed filter (empty: every event)")
    parser.add_argument("--no-deflate", action="store_true", help="no permessage-deflate")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-client run")
    parser.add_argument("--target", type=float, default=1.0, help="p99 target, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pantau-bench-feed-"))
    registry = make_fleet(args.devices, args.interval)
    args.rate = len(registry) / args.interval
    print(NOISE_NOTE)
    print(
        f"fleet: {len(registry)} devices x 1 reading / {args.interval:g} s = {args.rate:.0f} "
        f"readings/s (QoS 1, ts = now); {args.clients} WebSocket clients in "
        f"{args.client_processes} processes, types={args.types or 'all'}, "
        f"deflate={'off' if args.no_deflate else 'on'}; {args.duration:g} s per run; "
        f"folder {root}",
        flush=True,
    )
    runs: list[Run] = []
    with (
        running_stack(registry, root, keep=args.keep) as stack,
        fleet_publishers(stack.broker.url, stack.registry, args.publishers) as fleets,
    ):
        live = wait_until_live(stack, len(registry), args.interval, 180.0)
        print(f"live: {live}", flush=True)
        pids = stack.pids() | {f"fleet{n}": f.process.pid for n, f in enumerate(fleets)}
        if not args.no_baseline:
            runs.append(measure(stack, args, 1, 1, "baseline", pids, fleets))
        runs.append(measure(stack, args, args.clients, args.client_processes, "load", pids, fleets))
        api_dropped: list[str] = []
        with contextlib.suppress(httpx.HTTPError):
            metrics = httpx.get(
                f"{stack.api.url}/metrics",
                timeout=10,
                trust_env=False,
                headers={"Authorization": f"Bearer {stack.token}"},
            ).text
            api_dropped = [
                line
                for line in metrics.splitlines()
                if line.startswith("pantau_api_feed_events_dropped_total")
            ]
        summaries = [f.finish() for f in fleets]
    print_table(runs, args.target)
    published = sum(s.get("published", 0) for s in summaries)
    acked = sum(s.get("acked", 0) for s in summaries)
    lag = max((s.get("lag_p99", 0.0) for s in summaries), default=0.0)
    print(
        f"fleet: published {published:.0f}, acked {acked:.0f}, publisher lag p99 "
        f"{lag * 1e3:.0f} ms (ingest/s above: readings the collector wrote per second, "
        f"vs {args.rate:.0f}/s published); api: {' '.join(api_dropped) or 'n/a'}"
    )
    print(NOISE_NOTE)


if __name__ == "__main__":
    main()
