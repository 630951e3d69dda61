"""Load mode: a fleet publishing at a steady message rate, from one or several processes."""

from __future__ import annotations

import logging
import math
import multiprocessing
import queue
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Final

from pantau.registry import Registry
from simulators.clock import VirtualClock
from simulators.engine import FleetSimulator
from simulators.faults import FaultEvent
from simulators.fleet import purbalingga_fleet, with_interval
from simulators.injector import parse_fault_spec
from simulators.runner import run
from simulators.transport import MqttPublisher

__all__ = ["LoadPlan", "LoadResult", "run_load"]

log = logging.getLogger(__name__)

_MIRROR_EVERY: Final = 64  # publishes between updates of the shared counters


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to send: N devices per kind at `rate` messages/s in all, `batch` readings each."""

    mqtt_url: str
    devices_per_kind: int | None  # None: the example registry's layout
    rate: float
    batch: int = 1
    duration_s: float | None = None  # None: until stopped
    seed: int = 0
    city: str = "purbalingga"
    workers: int = 1
    faults: str = ""
    inflight: int = 1000

    def fleet(self) -> Registry:
        """The fleet, every device reporting so that the whole fleet sends `rate` messages/s."""
        fleet = purbalingga_fleet(self.city, self.devices_per_kind)
        return with_interval(fleet, len(fleet) / (self.rate * self.batch))


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What was sent and how fast the broker took it."""

    target: float
    messages: int
    readings: int
    acked: int
    unacked: int
    elapsed_s: float  # from the scheduled start to the last acknowledgement
    per_second: tuple[int, ...]  # acknowledgements in each whole second of the run
    ground_truth: tuple[FaultEvent, ...]

    @property
    def achieved(self) -> float:
        """Acknowledged messages per second over the whole run."""
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        """Achieved over target."""
        return self.achieved / self.target if self.target else 0.0

    def median_per_second(self) -> float:
        """The typical second (the first and last seconds are partial and left out)."""
        inner = self.per_second[1:-1] or self.per_second
        return float(statistics.median(inner)) if inner else 0.0


class _MirrorSink:
    """An MQTT publisher whose counts are mirrored into shared memory for the parent's report."""

    def __init__(
        self, inner: MqttPublisher, counters: tuple[Synchronized[int], Synchronized[int]]
    ) -> None:
        self._inner = inner
        self._published, self._acked = counters

    @property
    def published(self) -> int:
        """Messages handed to the publisher."""
        return self._inner.published

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged."""
        return self._inner.acked

    def _mirror(self) -> None:
        self._published.value = self._inner.published
        self._acked.value = self._inner.acked

    def publish(self, device_id: str, topic: str, payload: bytes) -> None:
        """Publish, mirroring the counts now and then."""
        self._inner.publish(device_id, topic, payload)
        if self._inner.published % _MIRROR_EVERY == 0:
            self._mirror()

    def wait(self, seconds: float) -> None:
        """Wait, then mirror the counts."""
        self._inner.wait(seconds)
        self._mirror()

    def flush(self, timeout_s: float) -> int:
        """Drain the acknowledgements, then mirror the counts."""
        left = self._inner.flush(timeout_s)
        self._mirror()
        return left


@dataclass(frozen=True, slots=True)
class _WorkerResult:
    messages: int
    readings: int
    acked: int
    unacked: int
    finished: float  # wall clock
    ground_truth: tuple[FaultEvent, ...]


def _work(
    plan: LoadPlan,
    index: int,
    start: float,
    counters: tuple[Synchronized[int], Synchronized[int]],
    stop: Any,
) -> _WorkerResult:
    """One worker's share of the fleet (every `workers`-th device), paced by the wall clock."""
    devices = list(plan.fleet())
    share = Registry(devices[index :: plan.workers])
    end = start + plan.duration_s if plan.duration_s is not None else None
    faults = parse_fault_spec(plan.faults)
    simulator = FleetSimulator(
        share, seed=plan.seed + index, start=start, end=end, faults=faults, batch=plan.batch
    )
    with MqttPublisher(
        plan.mqtt_url, client_id_prefix=f"pantau-load-{index}", inflight=plan.inflight
    ) as publisher:
        publisher.open()
        # Simulated time is wall time here: infinite speed, capped at the wall clock.
        clock = VirtualClock(start, math.inf, cap_at_wall=True)
        result = run(simulator.messages(), _MirrorSink(publisher, counters), clock, stop=stop)
        finished = time.time()  # the last acknowledgement (run waits for them)
    return _WorkerResult(
        result.messages,
        result.readings,
        result.acked,
        result.unacked,
        finished,
        tuple(simulator.ground_truth),
    )


def _worker_main(
    plan: LoadPlan,
    index: int,
    start: float,
    counters: tuple[Synchronized[int], Synchronized[int]],
    stop: Any,
    results: Any,
) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    results.put((index, _work(plan, index, start, counters, stop)))


def run_load(plan: LoadPlan, stop: threading.Event | None = None) -> LoadResult:
    """Run the plan; log the achieved rate every second; return the totals."""
    if plan.rate <= 0 or plan.workers < 1 or plan.batch < 1:
        raise ValueError("rate must be > 0, workers and batch >= 1")
    context = multiprocessing.get_context("spawn")
    counters = [
        (context.Value("q", 0, lock=False), context.Value("q", 0, lock=False))
        for _ in range(plan.workers)
    ]
    stop_workers = context.Event()
    # Workers need a moment to start (spawn imports numpy and paho) before the schedule begins.
    start = time.time() + (0.3 if plan.workers == 1 else 2.0)
    per_second: list[int] = []
    done = threading.Event()
    reporter = threading.Thread(
        target=_report,
        args=(plan, start, counters, per_second, done),
        name="load-report",
        daemon=True,
    )
    reporter.start()
    results: list[_WorkerResult] = []
    try:
        if plan.workers == 1:
            relay = threading.Thread(
                target=_relay_stop, args=(stop, stop_workers, done), name="load-stop", daemon=True
            )
            relay.start()
            results.append(_work(plan, 0, start, counters[0], stop_workers))
        else:
            results = _run_processes(plan, context, start, counters, stop, stop_workers, done)
    finally:
        done.set()
        reporter.join()
    acked = sum(r.acked for r in results)
    finished = max((r.finished for r in results), default=start)
    elapsed = finished - start
    if plan.duration_s is not None and not (stop is not None and stop.is_set()):
        # On schedule the last PUBACK lands right at the end: the run took `duration`.
        elapsed = max(elapsed, plan.duration_s)
    return LoadResult(
        target=plan.rate,
        messages=sum(r.messages for r in results),
        readings=sum(r.readings for r in results),
        acked=acked,
        unacked=sum(r.unacked for r in results),
        elapsed_s=max(elapsed, 1e-9),
        per_second=tuple(per_second),
        ground_truth=tuple(e for r in results for e in r.ground_truth),
    )


def _relay_stop(outer: threading.Event | None, inner: Any, done: threading.Event) -> None:
    while outer is not None and not done.is_set():
        if outer.wait(0.1):
            inner.set()
            return


def _run_processes(
    plan: LoadPlan,
    context: Any,
    start: float,
    counters: list[tuple[Synchronized[int], Synchronized[int]]],
    stop: threading.Event | None,
    stop_workers: Any,
    done: threading.Event,
) -> list[_WorkerResult]:
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker_main,
            args=(plan, i, start, counters[i], stop_workers, results),
            name=f"pantau-load-{i}",
        )
        for i in range(plan.workers)
    ]
    for process in processes:
        process.start()
    collected: dict[int, _WorkerResult] = {}
    try:
        while len(collected) < len(processes):
            if stop is not None and stop.is_set():
                stop_workers.set()
            try:
                index, result = results.get(timeout=0.2)
                collected[index] = result
            except queue.Empty:
                if not any(p.is_alive() for p in processes) and results.empty():
                    break
    finally:
        stop_workers.set()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
            process.close()
        results.close()
        results.join_thread()
    if len(collected) < len(processes):
        raise RuntimeError(f"{len(processes) - len(collected)} load worker(s) failed")
    return [collected[i] for i in sorted(collected)]


def _report(
    plan: LoadPlan,
    start: float,
    counters: list[tuple[Synchronized[int], Synchronized[int]]],
    per_second: list[int],
    done: threading.Event,
) -> None:
    """Log sent and acknowledged messages per second, from the shared counters."""
    delay = start - time.time()
    if delay > 0 and done.wait(delay):
        return
    last_sent = last_acked = 0
    tick = start
    while not done.is_set():
        tick += 1.0
        if done.wait(max(0.0, tick - time.time())):
            break
        sent = sum(int(p.value) for p, _ in counters)
        acked = sum(int(a.value) for _, a in counters)
        per_second.append(acked - last_acked)
        log.info(
            "load rate",
            extra={
                "target_per_s": round(plan.rate),
                "sent_per_s": sent - last_sent,
                "acked_per_s": acked - last_acked,
                "acked": acked,
            },
        )
        last_sent, last_acked = sent, acked
