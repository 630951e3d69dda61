"""`pantau ingest --workers N`: one command runs, restarts and stops N partition workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ingest.partition import district_partition
from ingest.workers import plan_workers
from pantau.dev import free_port
from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from pantau.settings import Settings
from tests.ingest_helpers import count, publish_all, publisher, running_collector, scrape, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DISTRICTS = ("bobotsari", "kalimanah", "kemangkon", "mrebet", "padamara", "rembang")


def _fleet(city: str, path: Path) -> None:
    Registry(
        Device(f"aq-{d}-{i}", "air_quality", city, district, -7.3, 109.3, 60.0)
        for d, district in enumerate(DISTRICTS)
        for i in range(3)
    ).write_csv(path)


def _messages(city: str, rounds: range) -> list[tuple[str, bytes]]:
    start = time.time() - 3600
    return [
        (
            f"city/{city}/{district}/air_quality/aq-{d}-{i}",
            json.dumps({"ts": start + r, "pm25": 20.0 + r % 7}).encode(),
        )
        for r in rounds
        for d, district in enumerate(DISTRICTS)
        for i in range(3)
    ]


def _worker_pids(client_id: str) -> dict[int, int]:
    """Worker index -> pid, from the processes' command lines."""
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for k in (1, 2):
            if f"{client_id}-{k}".encode() in argv and b"--partition" in argv:
                pids[k] = int(entry.name)
    return pids


def test_two_workers_divide_the_districts_restart_and_stop_together(
    broker: Any, influx: Any, influx_db: str, tmp_path: Path
) -> None:
    city = f"c{uuid.uuid4().hex[:10]}"
    registry = tmp_path / "registry.csv"
    _fleet(city, registry)
    assert {district_partition(d, 2) for d in DISTRICTS} == {1, 2}
    port = _two_free_ports()
    client_id = f"w{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "workers.log"
    with running_collector(
        broker.url,
        influx.url,
        influx_db,
        topic=f"city/{city}/+/+/+",
        client_id=client_id,
        registry=registry,
        log_path=log_path,
        spool_dir=tmp_path / "spool",
        extra_args=["--workers", "2", "--metrics-port", str(port)],
        wait_connected=False,
    ) as supervisor:
        # Both workers' SUBACKs, before anything is published.
        assert wait_for(lambda: log_path.read_text().count("msg=subscribed") == 2, 60), (
            log_path.read_text()[-3000:]
        )
        first = _messages(city, range(50))
        with publisher(broker.url) as pub, InfluxClient(influx.url, influx_db) as client:
            publish_all(pub, first)
            assert wait_for(lambda: count(client, "air_quality", "pm25") == len(first), 60)
            written = [
                scrape(port + k).get('pantau_readings_written_total{kind="air_quality"}', 0)
                for k in (0, 1)
            ]
            assert all(w > 0 for w in written) and sum(written) == len(first), written
            assert {p.name for p in (tmp_path / "spool").iterdir()} >= {"1", "2"}
            # A worker that dies is restarted under the same identity; nothing is lost.
            pids = _worker_pids(client_id)
            assert set(pids) == {1, 2}, pids
            os.kill(pids[2], signal.SIGKILL)
            second = _messages(city, range(50, 100))
            publish_all(pub, second)
            total = len(first) + len(second)
            assert wait_for(lambda: count(client, "air_quality", "pm25") == total, 90), (
                log_path.read_text()[-3000:]
            )
            assert "worker stopped; restarting it" in log_path.read_text()
            pids = _worker_pids(client_id)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0, log_path.read_text()[-3000:]
        assert wait_for(lambda: not _worker_pids(client_id), 10)


def test_worker_command_lines() -> None:
    settings = Settings(
        client_id="node1", registry=Path("/r.csv"), metrics_port=9108, spool_dir=Path("/s")
    )
    given = {"--db": "pantau", "--client-id": "node1", "--no-processors": ""}
    plans = plan_workers(settings, given, 3)
    assert [p.index for p in plans] == [1, 2, 3]
    argv = plans[2].argv
    assert argv[argv.index("--client-id") + 1] == "node1-3"
    assert argv[argv.index("--partition") + 1] == "3/3"
    assert argv[argv.index("--metrics-port") + 1] == "9110"
    assert argv[argv.index("--spool-dir") + 1] == "/s/3"
    assert "--no-processors" in argv and "--workers" not in argv
    with pytest.raises(ValueError, match="registry"):
        plan_workers(Settings(client_id="x"), {}, 2)
    with pytest.raises(ValueError, match="account"):
        plan_workers(
            Settings(
                client_id="pantau-ingest-1", mqtt_username="pantau-ingest-1", registry=Path("/r")
            ),
            {},
            2,
        )


def _two_free_ports() -> int:
    """A free port P whose neighbour P+1 is free too."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")
