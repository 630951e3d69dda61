"""SIGTERM: the collector stops taking messages, flushes what it holds and exits in time.

The collector drains for at most `shutdown_timeout_s` (8 s by default); the test waits clearly
longer (`SHUTDOWN_WAIT_S`), so a loaded machine is not mistaken for a hang.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pantau.influx import InfluxClient
from tests.ingest_helpers import (
    SHUTDOWN_WAIT_S,
    count,
    publish_all,
    publisher,
    running_collector,
    wait_for,
)

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
            # running_collector returned on the SUBACK: no sleep for the subscription.
            publish_all(pub, messages)
            # Rows in InfluxDB, not a guessed delay: SIGTERM lands mid-stream. Generous limit.
            assert wait_for(lambda: count(client, "air_quality", "pm25") > 0, timeout=60)
            collector.send_signal(signal.SIGTERM)
            # Drain deadline + 20 s (wait raises past it): a bounded exit, not the drain's time.
            assert collector.wait(SHUTDOWN_WAIT_S) == 0
        log = (tmp_path / "first.log").read_text()
        assert "draining" in log and "stopped" in log
        # Whatever the first run had not acknowledged waits in the broker for the same identity.
        with running_collector(
            broker.url, influx.url, influx_db, log_path=tmp_path / "second.log", **common
        ):
            # Generous: the second run takes the queued rest; rows in InfluxDB are the fact.
            assert wait_for(lambda: count(client, "air_quality", "pm25") == 6000, timeout=120), (
                tmp_path / "second.log"
            ).read_text()[-2000:]
