"""SIGTERM: the collector stops taking messages, flushes what it holds and exits within 10 s."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pantau.influx import InfluxClient
from tests.ingest_helpers import count, publish_all, publisher, running_collector, wait_for

pytestmark = pytest.mark.integration


def test_sigterm_mid_stream_exits_quickly_and_loses_nothing(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    topic = f"city/{unique_city}/bobotsari/air_quality/aq-0001"
    start = time.time() - 4 * 3600
    messages = [
        (topic, json.dumps({"ts": start + i, "pm25": float(i % 500)}).encode()) for i in range(6000)
    ]
    client_id = f"pantau-test-{unique_city}"
    common = {
        "topic": f"city/{unique_city}/+/+/+",
        "client_id": client_id,
        # Small batches, so SIGTERM lands while some are still being written.
        "extra_args": ["--batch-size", "200", "--batch-interval", "0.05"],
    }
    with InfluxClient(influx.url, influx_db) as client, publisher(broker.url) as pub:
        with running_collector(
            broker.url, influx.url, influx_db, log_path=tmp_path / "first.log", **common
        ) as collector:
            time.sleep(1.0)
            publish_all(pub, messages)
            assert wait_for(lambda: count(client, "air_quality", "pm25") > 0, timeout=20)
            stopped_at = time.monotonic()
            collector.send_signal(signal.SIGTERM)
            assert collector.wait(10) == 0
            assert time.monotonic() - stopped_at < 10
        log = (tmp_path / "first.log").read_text()
        assert "draining" in log and "stopped" in log
        # Whatever the first run had not acknowledged waits in the broker for the same identity.
        with running_collector(
            broker.url, influx.url, influx_db, log_path=tmp_path / "second.log", **common
        ):
            assert wait_for(lambda: count(client, "air_quality", "pm25") == 6000, timeout=30), (
                tmp_path / "second.log"
            ).read_text()[-2000:]
