"""End to end: readings of all three kinds land in a real InfluxDB; bad input is kept aside."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from processors.catalog import CATALOG
from tests.ingest_helpers import (
    SHUTDOWN_WAIT_S,
    count,
    publish_all,
    publisher,
    rows,
    running_collector,
    wait_for,
)

pytestmark = pytest.mark.integration

KINDS = ("air_quality", "water_level", "streetlight")
DISTRICTS = ("bobotsari", "kemangkon", "purbalingga", "rembang")


def fleet_messages(city: str, devices: int, per_device: int, start: float, seed: int = 7):
    """Messages and the expected points {(kind, device, ts_ns): (district, fields)}."""
    rng = np.random.default_rng(seed)
    messages: list[tuple[str, bytes]] = []
    expected: dict[tuple[str, str, int], tuple[str, dict[str, float]]] = {}
    for d in range(devices):
        kind = KINDS[d % 3]
        spec = CATALOG[kind]
        device_id = f"{kind[:2]}-{d:04d}"
        district = DISTRICTS[d % len(DISTRICTS)]
        topic = f"city/{city}/{district}/{kind}/{device_id}"
        readings = []
        for i in range(per_device):
            ts = start + i * 60.0 + d * 0.001
            fields: dict[str, float] = {}
            for f in spec.fields:
                if rng.random() < 0.2:
                    continue  # devices often report a subset of their fields
                if f.binary:
                    fields[f.name] = float(rng.integers(0, 2))
                else:
                    high = min(f.high, 5000.0)
                    fields[f.name] = round(float(rng.uniform(max(f.low, 0.0), high)), 2)
            if not fields:
                fields[spec.fields[-1].name] = 1.0
            reading: dict[str, Any] = {"ts": ts, **fields}
            if d % 4 == 0:
                reading["device_id"] = device_id
            readings.append(reading)
            expected[(kind, device_id, round(ts * 1e6) * 1000)] = (district, fields)
        if d % 2 == 0:  # single-object payloads
            messages += [(topic, json.dumps(r).encode()) for r in readings]
        else:  # gateway batches of 10 readings
            messages += [
                (topic, json.dumps(readings[i : i + 10]).encode()) for i in range(0, per_device, 10)
            ]
    return messages, expected


def test_ten_thousand_readings_from_200_devices_are_all_stored(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    messages, expected = fleet_messages(unique_city, 200, 50, start=time.time() - 2 * 86400)
    assert len(expected) == 10_000
    with (
        InfluxClient(influx.url, influx_db) as client,
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{unique_city}/+/+/+",
            log_path=tmp_path / "collector.log",
        ) as collector,
        publisher(broker.url) as pub,
    ):
        publish_all(pub, messages)  # running_collector returned on the SUBACK: no sleep

        per_kind = Counter(key[0] for key in expected)

        def stored() -> bool:
            return all(len(rows(client, k)) == per_kind[k] for k in KINDS)

        # Rows in InfluxDB are the fact; a generous limit for 10,000 readings on a loaded machine.
        assert wait_for(stored, timeout=180, interval=0.5), (
            tmp_path / "collector.log"
        ).read_text()[-3000:]
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(SHUTDOWN_WAIT_S) == 0  # drain deadline + 20 s: a bounded exit

        got: dict[tuple[str, str, int], tuple[str, dict[str, float]]] = {}
        for kind in KINDS:
            names = set(CATALOG[kind].field_names)
            for row in rows(client, kind):
                assert row["city"] == unique_city
                fields = {k: v for k, v in row.items() if k in names and v is not None}
                got[(kind, row["device_id"], row["time"])] = (row["district"], fields)
        assert got == expected
        assert count(client, "rejected", "detail") == 0


def test_bad_input_is_rejected_with_reasons_and_good_readings_survive(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    city = unique_city
    now = time.time()
    registry = Registry(
        [
            Device("aq-1", "air_quality", city, "bobotsari", -7.3, 109.3, 60.0),
            Device("sl-1", "streetlight", city, "bobotsari", -7.3, 109.3, 60.0, rated_w=60.0),
            Device(
                "wl-1",
                "water_level",
                city,
                "kemangkon",
                -7.4,
                109.3,
                300.0,
                waspada_cm=150.0,
                siaga_cm=250.0,
                awas_cm=350.0,
            ),
        ]
    )
    registry_path = tmp_path / "registry.csv"
    registry.write_csv(registry_path)
    aq = f"city/{city}/bobotsari/air_quality/aq-1"
    sl = f"city/{city}/bobotsari/streetlight/sl-1"
    wl = f"city/{city}/kemangkon/water_level/wl-1"
    good: list[tuple[str, dict[str, Any]]] = []
    bad: list[tuple[str, bytes, str]] = []

    def ok(topic: str, t: float, **fields: float) -> bytes:
        good.append((topic, {"ts": t, **fields}))
        return json.dumps({"ts": t, **fields}).encode()

    def j(value: Any) -> bytes:
        return json.dumps(value).encode()

    t = now - 3600
    bad += [
        (aq, b"", "empty_payload"),
        (aq, b'{"ts": ' + b" " * 1_100_000 + b"1}", "payload_too_large"),
        (aq, b'{"ts": 1, "pm25": "\xff\xfe"}', "not_utf8"),
        (aq, b'{"ts": 1732700000, "pm25": 3', "malformed_json"),
        (aq, b"[" * 5000 + b"]" * 5000, "too_deep"),
        (aq, b'"just a string"', "not_object"),
        (aq, b"[]", "empty_batch"),
        (f"city/{city}/Bobotsari/air_quality/aq-1", j({"ts": t, "pm25": 1}), "bad_topic"),
        (f"city/{city}/bad district/air_quality/aq-1", j({"ts": t, "pm25": 1}), "bad_topic"),
        (f"city/{city}/bobotsari/noise/aq-1", j({"ts": t, "db": 1}), "unknown_kind"),
        (f"city/{city}/bobotsari/air_quality/aq-404", j({"ts": t, "pm25": 1}), "unknown_device"),
        (f"city/{city}/mrebet/air_quality/aq-1", j({"ts": t, "pm25": 1}), "registry_mismatch"),
        (aq, j({"device_id": "aq-2", "ts": t, "pm25": 1}), "device_mismatch"),
        (aq, j({"ts": t, "pm25": 1, "colour": "grey"}), "unknown_field"),
        (aq, j({"ts": t}), "no_fields"),
        (aq, j({"pm25": 1}), "missing_timestamp"),
        (aq, j({"ts": "last tuesday", "pm25": 1}), "bad_timestamp"),
        (aq, j({"ts": "2024-11-27T09:33:20", "pm25": 1}), "bad_timestamp"),
        (aq, j({"ts": now + 3600, "pm25": 1}), "future_timestamp"),
        (aq, j({"ts": now * 1000, "pm25": 1}), "future_timestamp"),
        (aq, j({"ts": 315532800.0, "pm25": 1}), "too_old"),  # 1980: beyond the 30-year horizon
        (aq, j({"ts": t, "pm25": "35.2"}), "wrong_type"),
        (aq, j({"ts": t, "pm25": [35.2]}), "wrong_type"),
        (aq, j({"ts": t, "pm25": None, "pm10": False}), "wrong_type"),
        (aq, b'{"ts": %d, "pm25": NaN}' % int(t), "not_finite"),
        (aq, b'{"ts": %d, "pm25": Infinity}' % int(t), "not_finite"),
        (aq, j({"ts": t, "pm25": -1}), "out_of_range"),
        (aq, j({"ts": t, "humidity": 101}), "out_of_range"),
        (sl, j({"ts": t, "lamp_on": 3}), "out_of_range"),
        (wl, j({"ts": t, "level_cm": 1e9}), "out_of_range"),
    ]
    # Good readings between the bad ones, and a gateway batch that mixes both.
    messages: list[tuple[str, bytes]] = []
    for i, (topic, payload, _) in enumerate(bad):
        messages.append((topic, payload))
        kind_topic = (aq, sl, wl)[i % 3]
        field = {aq: "pm25", sl: "power_w", wl: "level_cm"}[kind_topic]
        messages.append((kind_topic, ok(kind_topic, t + i, **{field: 10.0 + i})))
    mixed = [
        {"ts": t + 100, "level_cm": 120.5},
        {"ts": t + 101, "level_cm": "high"},
        7,
        {"ts": t + 102, "level_cm": 121.0, "rain_mm": 2.5},
        {"ts": now + 86400, "level_cm": 1.0},
    ]
    good += [(wl, mixed[0]), (wl, mixed[3])]
    messages.append((wl, j(mixed)))
    # A replayed archive (the UCI set is from 2004) is inside the default horizon and is stored.
    messages.append((aq, ok(aq, 1_078_941_600.0, co=2600.0)))
    bad_reasons = Counter(reason for _, _, reason in bad) + Counter(
        {"wrong_type": 1, "not_object": 1, "future_timestamp": 1}
    )
    assert len(set(bad_reasons)) >= 20

    with (
        InfluxClient(influx.url, influx_db) as client,
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{city}/#",
            registry=registry_path,
            log_path=tmp_path / "collector.log",
        ) as collector,
        publisher(broker.url) as pub,
    ):
        publish_all(pub, messages)  # running_collector returned on the SUBACK: no sleep
        total_bad = sum(bad_reasons.values())
        expected_good = {
            (topic.rsplit("/", 2)[1], round(r["ts"] * 1e6) * 1000) for topic, r in good
        }

        def settled() -> bool:
            # Every rejection and every good reading is in InfluxDB (the last messages sent
            # are good ones, so the collector has taken everything before them).
            good_rows = sum(len(rows(client, kind)) for kind in KINDS)
            rejected = count(client, "rejected", "detail")
            return rejected >= total_bad and good_rows >= len(expected_good)

        # Rows in InfluxDB, not a guessed 0.5 s for stragglers; a generous limit.
        assert wait_for(settled, timeout=120), (tmp_path / "collector.log").read_text()[-3000:]
        collector.send_signal(signal.SIGTERM)
        # Drain deadline + 20 s: a bounded exit; the drain flushes anything extra it held, so
        # the exact counts below see it.
        assert collector.wait(SHUTDOWN_WAIT_S) == 0

        stored = Counter()
        for series in client.query('SELECT count("detail") FROM "rejected" GROUP BY "reason"'):
            stored[series["tags"]["reason"]] = int(series["values"][0][1])
        assert stored == bad_reasons
        for row in rows(client, "rejected"):
            assert row["detail"], row
            assert len(row["payload"]) <= 1024 * 4  # a bounded copy (escapes may lengthen it)
        got_good = {(kind, row["time"]) for kind in KINDS for row in rows(client, kind)}
        assert got_good == expected_good
