"""Processor bank benchmark: readings/s through every detector and live indicator, vectorised
bank against its reference twins, in the same run.

Run: .venv/bin/python tests/benchmarks/bench_processors.py [--devices 10000] [--batch 100000]

Batches of air-quality readings (5 fields each) spread over the devices, several readings per
device per batch, slightly out of order, with a few redeliveries. The bank is timed over
`--batches` batches after warm-up; the twin over one batch (it is slow).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from processors.bank import KindProcessor
from processors.catalog import CATALOG
from processors.detectors.reference import ReferenceBank


def make_batch(rng: np.random.Generator, devices: int, size: int, start: float):
    """One batch: `size` readings over `devices` devices, 60 s apart per device."""
    spec = CATALOG["air_quality"]
    per_device = size // devices
    ids = np.repeat(np.array([f"aq-{d:05d}" for d in range(devices)]), per_device)
    ts = start + np.tile(np.arange(per_device) * 60.0, devices)
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
    return ids[order], ts[order], values[order], present[order]


def main() -> None:
    """Time the bank and the twin; print readings/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    spec = CATALOG["air_quality"]
    bank = KindProcessor(spec, report_all=False)  # the live path: findings only when flagged
    start = 1.73e9
    per_device = args.batch // args.devices
    batches = [
        make_batch(rng, args.devices, args.batch, start + k * per_device * 60.0)
        for k in range(args.batches + 2)
    ]
    for batch in batches[:2]:  # warm-up: every device known, detectors past their warm-up
        bank.process(*batch)
    began = time.perf_counter()
    readings = 0
    for batch in batches[2:]:
        bank.process(*batch)
        bank.indicators(start)
        readings += len(batch[0])
    fast = readings / (time.perf_counter() - began)
    twin = ReferenceBank(spec)
    for batch in batches[:2]:
        twin.process(batch[0].tolist(), batch[1].tolist(), batch[2].tolist(), batch[3].tolist())
    batch = batches[2]
    began = time.perf_counter()
    twin.process(batch[0].tolist(), batch[1].tolist(), batch[2].tolist(), batch[3].tolist())
    slow = len(batch[0]) / (time.perf_counter() - began)
    print(
        f"batches of {args.batch:,} readings over {args.devices:,} devices "
        f"({per_device} per device per batch, 1 % redelivered, shuffled)"
    )
    print(f"vectorised bank (detectors + live indicators): {fast:>12,.0f} readings/s")
    print(f"reference twins (detectors only):              {slow:>12,.0f} readings/s")
    print(f"ratio: {fast / slow:,.0f}x")


if __name__ == "__main__":
    main()
