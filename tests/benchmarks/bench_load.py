"""Load-mode benchmark: can `pantau simulate --load` hold a steady rate up to 20,000 msg/s?

Run: .venv/bin/python tests/benchmarks/bench_load.py [--rates 2000,5000,...] [--duration 5]
     [--workers 1,2] [--batch 1] [--devices 300]

A private Mosquitto on a free port takes QoS 1 messages from the simulated fleet (no subscriber:
this measures the publishing side and the broker's PUBACKs). For each worker count and rate it
prints the target, the achieved rate (acknowledged messages / seconds from the scheduled start to
the last PUBACK), their ratio, and the median of the per-second counts; then the highest rate
held within 5%.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from pantau.dev import MosquittoService, free_port
from simulators.load import LoadPlan, run_load

DEFAULT_RATES = "1000,2000,5000,8000,10000,12000,15000,20000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=DEFAULT_RATES, help="comma-separated msg/s targets")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}", help="e.g. 1,2,4")
    parser.add_argument("--batch", type=int, default=1, help="readings per message")
    parser.add_argument("--devices", type=int, default=100, help="devices per kind")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    worker_counts = sorted({int(w) for w in args.workers.split(",")})
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="pantau-bench-load-") as root:
        broker = MosquittoService(Path(root), free_port())
        broker.start()
        try:
            print(
                f"cpus={os.cpu_count()} devices={3 * args.devices} batch={args.batch} "
                f"duration={args.duration:g}s broker={broker.url}"
            )
            print(f"{'workers':>7} {'target':>8} {'achieved':>9} {'ratio':>7} "
                  f"{'median/s':>9} {'unacked':>8}  holds")  # fmt: skip
            for workers in worker_counts:
                held = 0.0
                for rate in rates:
                    plan = LoadPlan(
                        broker.url,
                        devices_per_kind=args.devices,
                        rate=rate,
                        batch=args.batch,
                        duration_s=args.duration,
                        workers=workers,
                        city="bench",
                    )
                    result = run_load(plan)
                    ok = result.ratio >= 1 - args.tolerance and result.unacked == 0
                    held = rate if ok else held
                    print(
                        f"{workers:>7} {rate:>8,.0f} {result.achieved:>9,.0f} "
                        f"{result.ratio:>7.1%} {result.median_per_second():>9,.0f} "
                        f"{result.unacked:>8}  {'yes' if ok else 'NO'}",
                        flush=True,
                    )
                    if not ok and result.ratio < 0.7:
                        break  # far off: higher targets only take longer to fail
                print(
                    f"  -> {workers} worker(s): highest rate held within "
                    f"{args.tolerance:.0%}: {held:,.0f} msg/s"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
