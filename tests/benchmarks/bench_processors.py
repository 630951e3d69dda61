"""Processor bank benchmark: readings/s through every detector and live indicator, vectorised
bank against its reference twins, in the same run.

Run: .venv/bin/python tests/benchmarks/bench_processors.py [--devices 10000] [--batch 100000]
     [--district-size 20] [--spacing 60] [--day-of-data] [--profile]  (--profile: a
     per-function profile of the bank; pyinstrument if installed, else cProfile)

Batches of air-quality readings (5 fields each) spread over the devices, several readings per
device per batch, slightly out of order, with a few redeliveries; devices sit in districts of
`--district-size` stations, so the drift detector compares every station with its peers. After
two warm-up batches each side is timed batch by batch over the same `--batches` batches and the
best batch counts (the machine may be shared: the best is the least disturbed). Both
wall-clock and CPU time (process_time, which other processes on a busy machine disturb far
less) are shown; the ratio uses CPU time. The bank's time includes `indicators()`, the twins
compute none. The twins are ReferenceBank (spike, stuck, rate, dropout) and ReferenceDrift.
Both drift detectors get a 5-reading warm-up (not a week's), so that the timed batches are
judged against the district medians rather than still learning.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from processors.bank import KindProcessor
from processors.catalog import CATALOG
from processors.detectors import NormalDetector
from processors.detectors.normal_reference import ReferenceNormal
from processors.detectors.reference import ReferenceBank, ReferenceDrift

_DRIFT_WARMUP = 5


def make_batch(
    rng: np.random.Generator,
    devices: int,
    size: int,
    start: float,
    district_size: int,
    spacing_s: float = 60.0,
):
    """One batch: `size` readings over `devices` devices, `spacing_s` apart per device."""
    spec = CATALOG["air_quality"]
    per_device = size // devices
    ids = np.repeat(np.array([f"aq-{d:05d}" for d in range(devices)]), per_device)
    ts = start + np.tile(np.arange(per_device) * spacing_s, devices)
    values = np.full((len(ids), len(spec.fields)), np.nan)
    for name, base in (
        ("pm25", 35.0),
        ("pm10", 60.0),
        ("no2", 30.0),
        ("co", 800.0),
        ("temperature", 28.0),
    ):
        values[:, spec.column(name)] = np.round(base + rng.normal(0, base * 0.1, len(ids)), 1)
    present = ~np.isnan(values)
    order = rng.permutation(len(ids))  # arrival order is not time order
    redelivered = order[: len(order) // 100]  # 1 % delivered twice
    order = np.r_[order, redelivered]
    districts = np.repeat(
        np.array([f"district-{d // district_size:04d}" for d in range(devices)]), per_device
    )
    return ids[order], ts[order], values[order], present[order], districts[order]


def main() -> None:
    """Time the bank and the twin; print readings/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--district-size", type=int, default=20, help="stations per district")
    parser.add_argument("--spacing", type=float, default=60.0, help="s between a device's readings")
    parser.add_argument(
        "--day-of-data",
        action="store_true",
        help="warm the bank up on a day of readings first, so every station has a 24-hour mean "
        "and an ISPU (the twins compute no indicators: their warm-up stays two batches)",
    )
    parser.add_argument("--profile", action="store_true", help="profile the bank, no twin")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    spec = CATALOG["air_quality"]
    # Drift learns for a week of readings before it judges; the two warm-up batches are 20
    # readings per device, so both sides get a short warm-up and the timed batches are judged.
    drift = {"drift": {"warmup": _DRIFT_WARMUP}}
    # The live path: findings only when flagged.
    bank = KindProcessor(spec, report_all=False, params=drift)
    # The baseline in the same run: the same bank without the learned normal (its cost).
    plain = KindProcessor(spec, report_all=False, params=drift)
    plain.detectors = tuple(d for d in plain.detectors if not isinstance(d, NormalDetector))
    start = 1.73e9
    per_device = args.batch // args.devices
    span = per_device * args.spacing  # time one batch covers

    def batch_at(k: int):
        return make_batch(
            rng, args.devices, args.batch, start + k * span, args.district_size, args.spacing
        )

    # Warm-up: every device known, detectors past their warm-up (and with --day-of-data a day
    # of readings behind every station). The twins get the last two warm-up batches.
    warm = max(2, int(np.ceil(25 * 3600.0 / span))) if args.day_of_data else 2
    for k in range(warm - 2):
        day = batch_at(k)
        bank.process(*day)
        plain.process(*day)
    batches = [batch_at(k) for k in range(warm - 2, warm + args.batches)]
    for batch in batches[:2]:
        bank.process(*batch)
        plain.process(*batch)
    if args.profile:
        profile(bank, batches[2:], start)
        return
    fast_wall, fast_cpu = best_of(
        lambda batch: (bank.process(*batch), bank.indicators(start)), batches[2:]
    )
    plain_wall, plain_cpu = best_of(
        lambda batch: (plain.process(*batch), plain.indicators(start)), batches[2:]
    )
    twin, drift_twin = ReferenceBank(spec), ReferenceDrift(spec, warmup=_DRIFT_WARMUP)
    normal_twin = ReferenceNormal(spec)
    as_lists = [tuple(column.tolist() for column in b) for b in batches]

    for lists in as_lists[:2]:
        twin.process(*lists[:4])
        drift_twin.process(*lists)
        normal_twin.process(*lists[:4])
    # Each twin timed on its own, batch by batch; the twins' time is the sum of their bests.
    bank_wall, bank_cpu = best_of(lambda lists: twin.process(*lists[:4]), as_lists[2:])
    drift_wall, drift_cpu = best_of(lambda lists: drift_twin.process(*lists), as_lists[2:])
    normal_wall, normal_cpu = best_of(lambda lists: normal_twin.process(*lists[:4]), as_lists[2:])
    slow_wall = bank_wall + drift_wall + normal_wall
    slow_cpu = bank_cpu + drift_cpu + normal_cpu
    n = len(batches[2][0])
    print(
        f"batches of {args.batch:,} readings over {args.devices:,} devices "
        f"({per_device} per device per batch, 1 % redelivered, shuffled; "
        f"districts of {args.district_size}; readings {args.spacing:g} s apart"
        f"{'; after a day of data' if args.day_of_data else ''})"
    )
    print(f"readings/s, best of {args.batches} batches:          wall-clock     CPU time")
    rows = [
        ("vectorised bank (detectors + live indicators):", fast_wall, fast_cpu),
        ("  the same without the learned normal:", plain_wall, plain_cpu),
        ("reference twins (all detectors):", slow_wall, slow_cpu),
        ("  ReferenceBank (spike, stuck, rate, dropout):", bank_wall, bank_cpu),
        ("  ReferenceDrift:", drift_wall, drift_cpu),
        ("  ReferenceNormal:", normal_wall, normal_cpu),
    ]
    for label, wall, cpu in rows:
        print(f"{label:<47}{n / wall:>12,.0f} {n / cpu:>12,.0f}")
    print(
        f"ratio (CPU time): {slow_cpu / fast_cpu:,.0f}x "
        f"(wall-clock: {slow_wall / fast_wall:,.0f}x); "
        f"against ReferenceBank alone {bank_cpu / fast_cpu:,.0f}x"
    )
    print(f"bank with the learned normal / without (CPU time): {plain_cpu / fast_cpu:.2f}")


def best_of(run: Callable[[Any], object], batches: list[Any]) -> tuple[float, float]:
    """Shortest wall-clock and shortest CPU time of `run` over the batches, seconds."""
    wall = cpu = float("inf")
    for batch in batches:
        began, began_cpu = time.perf_counter(), time.process_time()
        run(batch)
        wall = min(wall, time.perf_counter() - began)
        cpu = min(cpu, time.process_time() - began_cpu)
    return wall, cpu


def profile(bank: KindProcessor, batches: list, start: float) -> None:
    """Where the bank's time goes over the timed batches."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        with cProfile.Profile() as prof:
            for batch in batches:
                bank.process(*batch)
                bank.indicators(start)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for batch in batches:
        bank.process(*batch)
        bank.indicators(start)
    profiler.stop()
    print(profiler.output_text(unicode=False))


if __name__ == "__main__":
    main()
