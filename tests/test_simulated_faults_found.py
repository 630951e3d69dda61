"""A simulated run's injected faults are found by `pantau evaluate` against its ground truth."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from pantau.influx import InfluxClient
from simulators.faults import read_ground_truth
from simulators.fleet import purbalingga_fleet, with_interval
from tests.ingest_helpers import count, pantau, running_collector, wait_for

pytestmark = pytest.mark.integration


def test_injected_faults_of_a_simulated_run_are_found(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    days = 1
    start = math.floor(time.time()) - (days + 1) * 86400.0
    registry = with_interval(purbalingga_fleet(unique_city, devices_per_kind=6), 120.0)
    registry_path = tmp_path / "fleet.csv"
    registry.write_csv(registry_path)
    truth_path = tmp_path / "truth.csv"
    with running_collector(
        broker.url,
        influx.url,
        influx_db,
        topic=f"city/{unique_city}/#",
        registry=registry_path,
        log_path=tmp_path / "collector.log",
    ):
        done = pantau(
            "simulate",
            "--mqtt",
            broker.url,
            "--registry",
            str(registry_path),
            "--start",
            str(start),
            "--duration",
            str(days * 86400),
            "--fast",
            "--seed",
            "3",
            "--faults",
            "spike=0.004,dropout=0.001,lamp_out=0.002,day_burn=0.002",
            "--ground-truth",
            str(truth_path),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        with InfluxClient(influx.url, influx_db) as client:
            expected = len(registry) * days * 720 * 0.8  # dropouts remove a little
            assert wait_for(
                lambda: (
                    sum(
                        count(client, k, f)
                        for k, f in (
                            ("air_quality", "pm25"),
                            ("water_level", "level_cm"),
                            ("streetlight", "lamp_on"),
                        )
                    )
                    >= expected
                ),
                timeout=60,
            )
    truth = read_ground_truth(truth_path)
    injected = {e.fault for e in truth}
    assert {"spike", "dropout", "lamp_out", "day_burn"} <= injected
    result = pantau(
        "evaluate",
        "--ground-truth",
        str(truth_path),
        "--influx",
        influx.url,
        "--db",
        influx_db,
        "--registry",
        str(registry_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0] in injected
    }
    for fault in ("spike", "dropout", "lamp_out", "day_burn"):
        events, found = int(table[fault][1]), int(table[fault][2])
        assert events > 0 and found / events >= 0.6, (fault, result.stdout)
