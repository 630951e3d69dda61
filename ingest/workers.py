"""`pantau ingest --workers N`: N collector processes on one host, one partition each.

Each worker is an ordinary `pantau ingest` with `--partition K/N` (so every district's readings
reach one worker, and its processors see whole series), the client id `{client id}-{K}`, its
own spool folder and, with `--metrics-port P`, the port P+K-1. The supervisor forwards SIGTERM
and SIGINT (each worker drains as a lone collector does), restarts a worker that dies with
jittered backoff, and exits once every worker has stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from pantau.backoff import Backoff
from pantau.settings import Settings

__all__ = ["WorkerPlan", "plan_workers", "supervise"]

log = logging.getLogger(__name__)

_POLL_S: Final = 0.2
_HEALTHY_S: Final = 30.0  # a worker up this long resets its restart backoff


@dataclass(frozen=True)
class WorkerPlan:
    """The command line of one worker."""

    index: int  # 1..N
    argv: list[str]


def plan_workers(settings: Settings, given: Mapping[str, str], n: int) -> list[WorkerPlan]:
    """The N workers' command lines, from the options given to `pantau ingest --workers N`.

    `given` holds the long options the user gave (flag -> value), without `--workers`.
    Raises ValueError for settings a worker layout cannot keep.
    """
    if settings.partition is not None or settings.share_group:
        raise ValueError("--workers sets each worker's partition: drop partition/share_group")
    if settings.registry is None:
        raise ValueError("--workers needs the device registry: it divides the districts")
    if settings.mqtt.effective_username is not None and settings.mqtt.username_is_client_id:
        raise ValueError(
            "--workers cannot share one broker account: the broker binds the client id to "
            "the user name. Run one `pantau ingest --partition K/N` per account instead"
        )
    base = {k: v for k, v in given.items() if k not in ("--client-id", "--spool-dir")}
    base.pop("--metrics-port", None)
    plans = []
    for k in range(1, n + 1):
        options = dict(base)
        options["--client-id"] = f"{settings.client_id}-{k}"
        options["--partition"] = f"{k}/{n}"
        spool = settings.spool.dir
        if spool is not None:
            options["--spool-dir"] = str(Path(spool) / str(k))
        if settings.metrics_port is not None:
            options["--metrics-port"] = str(settings.metrics_port + k - 1)
        argv = [sys.executable, "-m", "pantau.cli", "ingest"]
        for flag, value in options.items():
            argv += [flag] if value == "" else [flag, value]
        plans.append(WorkerPlan(k, argv))
    return plans


def supervise(plans: list[WorkerPlan]) -> int:
    """Run the workers until SIGTERM/SIGINT, restarting any that dies; 0 on a clean stop."""
    stop = threading.Event()
    processes: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    backoffs = {plan.index: Backoff(1.0, 30.0) for plan in plans}
    due: dict[int, float] = {plan.index: 0.0 for plan in plans}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        # Not stop.set() here: the main thread may be inside stop.wait() holding the event's
        # lock (see collector_cli); a short-lived thread sets it.
        threading.Thread(target=stop.set, name="stop", daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    env = {k: v for k, v in os.environ.items() if k != "PANTAU_WORKERS"}
    failed = False
    while not stop.is_set():
        now = time.monotonic()
        for plan in plans:
            process = processes.get(plan.index)
            if process is not None and process.poll() is None:
                if now - started[plan.index] > _HEALTHY_S:
                    backoffs[plan.index].reset()
                continue
            if process is not None:
                log.warning(
                    "worker stopped; restarting it",
                    extra={"worker": plan.index, "exit": process.returncode},
                )
                delay = backoffs[plan.index].next_delay()
                due[plan.index] = now + delay
                processes.pop(plan.index)
                continue
            if now >= due[plan.index]:
                processes[plan.index] = subprocess.Popen(plan.argv, env=env)
                started[plan.index] = now
                log.info("worker started", extra={"worker": plan.index})
        stop.wait(_POLL_S)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # each drains as a lone collector does
    for index, process in processes.items():
        code = process.wait()
        failed |= code != 0
        log.info("worker stopped", extra={"worker": index, "exit": code})
    return 1 if failed else 0
