"""History benchmark: a year of one gauge's field from raw points vs rollups; the alert engine.

Run (from the repository root):

    .venv/bin/python -m tests.benchmarks.bench_history [--devices 3] [--days 365]
        [--spacing 300] [--repeats 7] [--events 200000] [--gauges 1000]

Part 1 starts a private InfluxDB on a free port in a temporary folder, writes --days of raw
water_level readings (level_cm, rain_mm, battery_v; tags city, district, device_id as the
collector writes them) for --devices gauges, one every --spacing seconds, then sets rollups up
(`ensure_rollups`) and backfills the whole range (`backfill`), printing the time of each step.
It then times the year-long history query of one device and field (`history_query`, interval
one day) read from raw points, from the daily and from the hourly rollup, interleaved
--repeats times: median and best per source, raw / rollup, the points each answer returned and
the largest difference between their daily means. `pick_source` says which source the API picks.

Part 2 times the pure alert engine on deploy/alerts.toml: --events reading() + indicator()
pairs over --gauges gauges whose flood level follows a flood wave, tick() every 1,000 events;
the baseline in the same run is the same loop calling only reading(). Both are wall-clock
times on a shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from api.alerts.engine import AlertEngine
from api.alerts.rules import parse_rules
from api.queries import history_query
from pantau.dev import InfluxDBService, free_port
from pantau.influx import InfluxClient
from pantau.lineprotocol import point
from pantau.rollups import Source, backfill, ensure_rollups, pick_source
from pantau.settings import Settings

DAY = 86400
ROOT = Path(__file__).resolve().parents[2]
ALERTS_TOML = ROOT / "deploy" / "alerts.toml"
CITY = "bench"
KIND = "water_level"
FIELD = "level_cm"
SOURCES = (Source.RAW, Source.ROLLUP_1D, Source.ROLLUP_1H)


def _lines(device: int, start_s: int, count: int, spacing: int, seed: int) -> list[str]:
    """A gauge's readings: seasonal and daily cycles, noise, rain showers, a slow battery."""
    rng = np.random.default_rng(seed)
    t = start_s + spacing * np.arange(count, dtype=np.int64)
    phase = 2 * math.pi * (t % (365 * DAY)) / (365 * DAY)
    level = 120 + 60 * np.sin(phase) + 8 * np.sin(2 * math.pi * (t % DAY) / DAY)
    level = np.round(level + rng.normal(0, 2, count), 1)
    rain = np.round(np.where(rng.random(count) < 0.1, rng.exponential(2.0, count), 0.0), 1)
    battery = np.round(4.2 - 0.4 * ((t - start_s) % (30 * DAY)) / (30 * DAY), 2)
    tags = {"city": CITY, "district": f"d{device % 4}", "device_id": f"wl-{device:03d}"}
    return [
        point(
            KIND,
            tags,
            {"level_cm": float(lv), "rain_mm": float(rn), "battery_v": float(bv)},
            int(ts) * 1_000_000_000,
        )
        for ts, lv, rn, bv in zip(t.tolist(), level, rain, battery, strict=True)
    ]


def _write_year(
    client: InfluxClient, devices: int, start_s: int, end_s: int, spacing: int, chunk: int
) -> int:
    count = (end_s - start_s) // spacing
    written = 0
    began = time.perf_counter()
    encode = 0.0
    for device in range(devices):
        t0 = time.perf_counter()
        lines = _lines(device, start_s, count, spacing, seed=device)
        encode += time.perf_counter() - t0
        for lo in range(0, len(lines), chunk):
            client.write("\n".join(lines[lo : lo + chunk]).encode(), precision="n")
        written += len(lines)
    took = time.perf_counter() - began
    print(
        f"write: {written:,} points ({count:,} per device) in {took:.1f} s "
        f"(of which encoding {encode:.1f} s): {written / (took - encode):,.0f} points/s to InfluxDB"
    )
    return count


def _daily(series: list[dict[str, object]]) -> dict[int, float]:
    """Day start -> mean, from an answer's first series (time, mean, min, max, last)."""
    if not series:
        return {}
    values = series[0]["values"]
    assert isinstance(values, list)
    return {int(row[0]): float(row[1]) for row in values if row[1] is not None}


def _bench_history(
    client: InfluxClient, start_s: int, end_s: int, repeats: int
) -> dict[Source, list[float]]:
    times: dict[Source, list[float]] = {s: [] for s in SOURCES}
    answers: dict[Source, dict[int, float]] = {}
    queries = {
        s: history_query(KIND, FIELD, "wl-000", start_s * 10**9, end_s * 10**9, DAY, s)
        for s in SOURCES
    }
    for _ in range(repeats):
        for source in SOURCES:  # interleaved: load from elsewhere hits every source alike
            t0 = time.perf_counter()
            series = client.query(queries[source], epoch="s")
            times[source].append(time.perf_counter() - t0)
            answers[source] = _daily(series)
    raw_median = statistics.median(times[Source.RAW])
    print(f"\nhistory of one device/field over {(end_s - start_s) // DAY} days, interval 1 day, "
          f"{repeats} interleaved repeats")  # fmt: skip
    print(f"{'source':>10} {'median ms':>10} {'min ms':>8} {'raw/this':>9} {'points':>7} "
          f"{'max |Δ mean| vs raw':>20}")  # fmt: skip
    for source in SOURCES:
        median = statistics.median(times[source])
        got = answers[source]
        common = got.keys() & answers[Source.RAW].keys()
        diff = max((abs(got[d] - answers[Source.RAW][d]) for d in common), default=math.nan)
        missing = len(answers[Source.RAW].keys() ^ got.keys())
        print(
            f"{source.value:>10} {median * 1e3:>10.1f} {min(times[source]) * 1e3:>8.1f} "
            f"{raw_median / median:>8.1f}x {len(got):>7} {diff:>20.2e}"
            + (f"  ({missing} days differ)" if missing else "")
        )
    print(f"pick_source(365 days, 1 day) -> {pick_source(365 * DAY, DAY).value}; "
          f"(30 days, 1 hour) -> {pick_source(30 * DAY, 3600).value}; "
          f"(1 day, 5 min) -> {pick_source(DAY, 300).value}")  # fmt: skip
    return times


def part_influx(args: argparse.Namespace) -> None:
    """Write a year, roll it up, time the history query per source."""
    end_s = (int(time.time()) // DAY) * DAY
    start_s = end_s - args.days * DAY
    with tempfile.TemporaryDirectory(prefix="pantau-bench-history-") as root:
        service = InfluxDBService(Path(root), free_port())
        service.start()
        try:
            db = "bench_history"
            print(f"influxdb={service.url} db={db} devices={args.devices} days={args.days} "
                  f"spacing={args.spacing}s")  # fmt: skip
            settings = Settings.from_options(influx_url=service.url, influx_db=db)
            with InfluxClient(service.url, db, timeout_s=600.0) as client:
                client.create_database()
                _write_year(client, args.devices, start_s, end_s, args.spacing, args.chunk)
                t0 = time.perf_counter()
                changes = ensure_rollups(client, settings)
                took = time.perf_counter() - t0
                print(f"ensure_rollups: {len(changes)} statements in {took * 1e3:.0f} ms")
                t0 = time.perf_counter()
                points = backfill(client, settings, start_s, end_s)
                took = time.perf_counter() - t0
                print(f"backfill of {args.days} days: {points:,} rollup points in {took:.1f} s")
                _bench_history(client, start_s, end_s, args.repeats)
        finally:
            service.stop()


def _events(events: int, gauges: int, spacing: int) -> list[tuple[str, str, float, float]]:
    """(device, district, ts, flood level) per event: each gauge reports every `spacing` s.

    A flood wave passes one district after another: the level of a gauge rises 0 -> 3 and falls
    back over about six hours, and every tenth gauge also flaps around Siaga (2).
    """
    t0 = 1_790_000_000.0
    out: list[tuple[str, str, float, float]] = []
    rounds = math.ceil(events / gauges)
    for r in range(rounds):
        for g in range(gauges):
            if len(out) == events:
                return out
            ts = t0 + r * spacing + g * spacing / gauges
            district = g % 18
            hours = (ts - t0) / 3600 - district * 0.5  # the wave reaches district k after k/2 h
            wave = 3.0 * math.exp(-(((hours - 4.0) / 2.0) ** 2))
            level = float(min(3, int(wave + 0.5)))
            if g % 10 == 0:
                level = 2.0 if r % 3 else 1.0
            out.append((f"g{g:04d}", f"d{district:02d}", ts, level))
    return out


def _run_engine(
    events: list[tuple[str, str, float, float]],
    gauges: int,
    spacing: int,
    feed: Callable[[AlertEngine, str, str, float, float], int],
    rules_text: str,
) -> tuple[float, list[float], int]:
    engine = AlertEngine(parse_rules(rules_text, str(ALERTS_TOML)))
    for g in range(gauges):
        engine.register_device(KIND, CITY, f"d{g % 18:02d}", f"g{g:04d}", float(spacing))
    ticks: list[float] = []
    changes = 0
    feed_s = 0.0
    for lo in range(0, len(events), 1000):
        t0 = time.perf_counter()
        for device, district, ts, level in events[lo : lo + 1000]:
            changes += feed(engine, device, district, ts, level)
        t1 = time.perf_counter()
        changes += len(engine.tick(events[min(lo + 999, len(events) - 1)][2]))
        ticks.append(time.perf_counter() - t1)
        feed_s += t1 - t0
    return feed_s, ticks, changes


def _reading_and_indicator(
    engine: AlertEngine, device: str, district: str, ts: float, level: float
) -> int:
    n = len(engine.reading(KIND, CITY, district, device, ts))
    return n + len(engine.indicator(KIND, CITY, district, device, ts, {"flood_level": level}))


def _reading_only(engine: AlertEngine, device: str, district: str, ts: float, level: float) -> int:
    return len(engine.reading(KIND, CITY, district, device, ts))


def part_engine(args: argparse.Namespace) -> None:
    """Time the alert engine with and without indicator rules, in the same run."""
    rules_text = ALERTS_TOML.read_text(encoding="utf-8")
    t0 = time.perf_counter()
    rules = parse_rules(rules_text, str(ALERTS_TOML))
    parse_ms = (time.perf_counter() - t0) * 1e3
    print(f"\nalert engine: parse_rules(deploy/alerts.toml) {parse_ms:.1f} ms, "
          f"{len(rules.rules)} rules; {args.events:,} events over {args.gauges:,} gauges, "
          "tick() every 1,000 events")  # fmt: skip
    events = _events(args.events, args.gauges, args.engine_spacing)
    print(f"{'loop':>22} {'events/s':>10} {'tick median ms':>15} {'tick max ms':>12} "
          f"{'changes':>8}")  # fmt: skip
    rates = {}
    for name, feed in (
        ("reading+indicator", _reading_and_indicator),
        ("reading only (base)", _reading_only),
    ):
        feed_s, ticks, changes = _run_engine(
            events, args.gauges, args.engine_spacing, feed, rules_text
        )
        rates[name] = len(events) / feed_s
        print(
            f"{name:>22} {rates[name]:>10,.0f} {statistics.median(ticks) * 1e3:>15.2f} "
            f"{max(ticks) * 1e3:>12.2f} {changes:>8,}"
        )
    ratio = rates["reading+indicator"] / rates["reading only (base)"]
    print(f"reading+indicator / reading only: {ratio:.2f} (events/s, ticks excluded)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3, help="water_level gauges in InfluxDB")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--spacing", type=int, default=300, help="seconds between readings")
    parser.add_argument("--chunk", type=int, default=10_000, help="lines per write")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds of the queries")
    parser.add_argument("--events", type=int, default=200_000, help="alert engine events")
    parser.add_argument("--gauges", type=int, default=1000, help="alert engine gauges")
    parser.add_argument(
        "--engine-spacing", type=int, default=300, help="s between a gauge's events"
    )
    parser.add_argument("--skip-influx", action="store_true", help="only the alert engine")
    parser.add_argument("--skip-engine", action="store_true", help="only the history part")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.skip_influx:
        part_influx(args)
    if not args.skip_engine:
        part_engine(args)


if __name__ == "__main__":
    main()
